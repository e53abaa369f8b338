"""Shared fixtures. Ray starts once per session with settings that work on 2 cores."""

import pytest

from raytrain.ray_env import set_default_env

set_default_env()  # raytrain's own Ray environment (DEFAULT_ENV), set before any test imports Ray


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory):
    """A small SynthVTT set shared by the Ray tests (60 clips, 160x120 H.264)."""
    from raytrain.data.synth import generate_synthvtt

    out = tmp_path_factory.mktemp("synthvtt")
    generate_synthvtt(out, num_videos=60, seed=3)
    return out


@pytest.fixture(scope="session")
def ray_session():
    import ray

    if not ray.is_initialized():
        from raytrain.ray_env import start_local
        from raytrain.ray_local import api_server_env, temporary_env

        with temporary_env(api_server_env(None)):  # its State API calls never reach another Ray (docs/faults.md)
            start_local(lambda: ray.init(num_cpus=4, object_store_memory=200 * 2**20, include_dashboard=False,
                                          log_to_driver=False))  # again if a busy machine misses Ray's 30 s
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    yield ray
    ray.shutdown()


@pytest.fixture
def plan_order(ray_session):
    """Ray Data keeps rows in plan order, as the trainer sets it (DataConfig); tests that compare rows
    with the plan position by position need it, or the actors' finishing order shows under load.
    Set before any dataset is built: a dataset copies the current DataContext when it is made."""
    ctx = ray_session.data.DataContext.get_current()
    before, ctx.execution_options.preserve_order = ctx.execution_options.preserve_order, True
    yield ray_session
    ctx.execution_options.preserve_order = before


@pytest.fixture
def tiny_config(synth_dir, tmp_path):
    """A config for a 2-worker CPU fit of the micro open_clip model on the shared SynthVTT set."""
    from tiny import tiny_fit_config

    return tiny_fit_config(synth_dir, tmp_path / "runs")
