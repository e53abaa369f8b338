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
        ray.init(num_cpus=4, object_store_memory=200 * 2**20, include_dashboard=False, log_to_driver=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    yield ray
    ray.shutdown()


@pytest.fixture
def tiny_config(synth_dir, tmp_path):
    """A config for a 2-worker CPU fit of the micro open_clip model on the shared SynthVTT set."""
    from raytrain.config import Config, apply_overrides

    return apply_overrides(Config(), [
        f"data.manifest={synth_dir / 'manifest.parquet'}", "data.num_frames=3", "data.max_words=16",
        "data.decode_batch_size=8", "model.arch=RT-Micro-ViT", "model.temporal=meanP",
        "optim.lr=2e-3", "optim.tower_lr=2e-3", "optim.weight_decay=0.0", "scaling.num_workers=2",
        "scaling.cpus_per_worker=1", "train.batch_size=4", "train.epochs=1", "checkpoint.every=2",
        "train.log_every=1", f"run.storage_path={tmp_path / 'runs'}", "run.name=t",
    ])
