"""Tier 1: run.storage_path as a local folder, a shared path or a URI (TensorBoard, metrics.json),
the multi-node shared-storage check, and the cluster config keys."""

import json
import os

import pytest

from raytrain.config import Config, ConfigError, apply_overrides
from raytrain.data.pipeline import decode_remote_args
from raytrain.ray_env import DEFAULT_ENV, ensure_ray, job_env_vars
from raytrain.ray_local import NO_API_SERVER
from raytrain.storage import (
    TensorBoardLog,
    check_shared_storage,
    join,
    mount_fstype,
    read_text,
    storage_is_shared,
    write_text,
)

TWO_NODES = [{"NodeID": "a", "Alive": True}, {"NodeID": "b", "Alive": True}]


def _cfg(*overrides):
    return apply_overrides(Config(), list(overrides))


def test_cluster_config_keys_parse_and_reject_bad_values():
    cfg = _cfg("run.shared_storage=true", "scaling.placement_strategy=STRICT_SPREAD",
               "data.decode_resource=decode", "data.decode_resource_per_actor=0.5")
    assert cfg.run.shared_storage is True and cfg.scaling.placement_strategy == "STRICT_SPREAD"
    assert Config().run.shared_storage == "auto" and Config().scaling.placement_strategy == "PACK"
    assert Config.from_dict(cfg.to_dict()) == cfg
    for bad, key in (("run.shared_storage=maybe", "run.shared_storage"),
                     ("run.shared_storage=1", "run.shared_storage"),
                     ("scaling.placement_strategy=spread", "scaling.placement_strategy"),
                     ("data.decode_resource_per_actor=0", "data.decode_resource_per_actor")):
        with pytest.raises(ConfigError, match=key):
            _cfg(bad)


def test_decode_actors_request_the_decode_resource():
    assert decode_remote_args(Config()) == {}
    cfg = _cfg("data.decode_resource=decode", "data.decode_resource_per_actor=0.25")
    assert decode_remote_args(cfg) == {"resources": {"decode": 0.25}}


def test_single_node_accepts_any_local_path(tmp_path):
    check_shared_storage(_cfg(f"run.storage_path={tmp_path}"), nodes=TWO_NODES[:1])


def test_multi_node_refuses_a_node_local_path(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text("overlay / overlay rw 0 0\n")
    for value in ("auto", "false"):
        cfg = _cfg(f"run.storage_path={tmp_path / 'runs'}", f"run.shared_storage={value}")
        with pytest.raises(ValueError, match="run.storage_path.*2 alive nodes.*run.shared_storage=true"):
            check_shared_storage(cfg, nodes=TWO_NODES, mounts_file=str(mounts))


def test_multi_node_accepts_uris_declared_and_network_mounts(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text(f"overlay / overlay rw 0 0\nserver:/export {tmp_path / 'nfs'} nfs4 rw 0 0\n")
    (tmp_path / "nfs").mkdir()  # the mount point exists; the run folder below it not yet
    for overrides in (["run.storage_path=s3://bucket/runs"], ["run.storage_path=gs://bucket/runs"],
                      [f"run.storage_path={tmp_path}", "run.shared_storage=true"],
                      [f"run.storage_path={tmp_path / 'nfs' / 'runs'}"]):
        check_shared_storage(_cfg(*overrides), nodes=TWO_NODES, mounts_file=str(mounts))
    assert storage_is_shared(_cfg(f"run.storage_path={tmp_path / 'nfs' / 'a'}"), str(mounts)) == (
        True, "on a nfs4 mount")
    assert mount_fstype(str(tmp_path / "nfsx"), str(mounts)) == "overlay"  # a prefix is not a mount


def test_join_keeps_uri_scheme():
    assert join("s3://bucket/runs/", "name", "metrics.json") == "s3://bucket/runs/name/metrics.json"


def test_write_text_and_tensorboard_to_a_uri(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    base = f"file://{tmp_path}/store"
    write_text(join(base, "run", "metrics.json"), json.dumps({"t2v_R1": 1.0}))
    assert json.loads(read_text(join(base, "run", "metrics.json"))) == {"t2v_R1": 1.0}
    assert (tmp_path / "store/run/metrics.json").is_file()

    log = TensorBoardLog(join(base, "run", "tensorboard"), purge_step=0)
    log.add_scalar("train/loss", 1.5, 1)
    log.add_text("worker_nodes", "{0: 'a'}", 0)
    assert not list((tmp_path / "store/run/tensorboard").glob("events.*"))  # not yet uploaded
    log.upload_every_s = 0.0
    log.add_scalar("train/loss", 1.0, 2)  # uploads now
    assert list((tmp_path / "store/run/tensorboard").glob("events.out.tfevents.*"))
    log.close()
    events = list((tmp_path / "store/run/tensorboard").glob("events.out.tfevents.*"))
    acc = EventAccumulator(str(events[0]))
    acc.Reload()
    assert [e.value for e in acc.Scalars("train/loss")] == [1.5, 1.0]


def test_local_tensorboard_writes_in_place(tmp_path):
    log = TensorBoardLog(str(tmp_path / "tb"))
    log.add_scalar("x", 1.0, 1)
    log.close()
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


JOB_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"  # what `ray job submit` sets in the job's driver


def test_job_env_vars_are_read_from_the_submitted_jobs_runtime_env(monkeypatch):
    monkeypatch.delenv(JOB_ENV, raising=False)
    assert job_env_vars() == {}  # not inside a job
    monkeypatch.setenv(JOB_ENV, json.dumps(
        {"runtime_env": {"working_dir": "gcs://x.zip", "env_vars": {"RAY_DATA_USE_DATASOURCE_V2": "0"}}}))
    assert job_env_vars() == {"RAY_DATA_USE_DATASOURCE_V2": "0"}
    assert "RAY_DATA_USE_DATASOURCE_V2" in DEFAULT_ENV
    for raw in ("{}", json.dumps({"runtime_env": None}), json.dumps({"runtime_env": {"working_dir": "x"}}),
                "not json", "[1, 2]"):
        monkeypatch.setenv(JOB_ENV, raw)
        assert job_env_vars() == {}, raw


@pytest.fixture
def ray_init_calls(monkeypatch):
    """``ensure_ray`` against a Ray that is not started: every ``ray.init`` call's keyword arguments.
    The env defaults and the Data settings it changes are put back afterwards."""
    import ray
    import ray.data

    ctx = ray.data.DataContext.get_current()
    monkeypatch.setattr(ctx, "enable_progress_bars", True)
    monkeypatch.setattr(ctx, "print_on_execution_start", True)
    for key in (*DEFAULT_ENV, JOB_ENV, "RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):
        monkeypatch.setenv(key, "")  # remembered, then removed: put back as it was afterwards
        monkeypatch.delenv(key)
    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs))
    return calls


def test_ensure_ray_starts_a_local_ray_with_the_default_env(ray_init_calls):
    import ray.data

    ensure_ray(_cfg("ray.num_cpus=3", "ray.object_store_mb=300"))
    # State API calls of its processes stay on it (a closed port: it has no dashboard; ray_local.api_server_env)
    env = {**DEFAULT_ENV, "RAY_API_SERVER_ADDRESS": NO_API_SERVER}
    assert ray_init_calls == [{"address": "local", "include_dashboard": False, "_node_ip_address": "127.0.0.1",
                               "runtime_env": {"env_vars": env}, "log_to_driver": False,
                               "num_cpus": 3, "object_store_memory": 300 * 2**20}]
    assert {k: os.environ[k] for k in DEFAULT_ENV} == DEFAULT_ENV  # this process, and every worker (runtime_env)
    assert "RAY_API_SERVER_ADDRESS" not in os.environ  # only while Ray started: a later `ray job submit` is not bent
    ctx = ray.data.DataContext.get_current()
    assert not ctx.enable_progress_bars and not ctx.print_on_execution_start
    ensure_ray(Config(), quiet=False)
    assert ray_init_calls[1] == {"address": "local", "include_dashboard": False, "_node_ip_address": "127.0.0.1",
                                 "runtime_env": {"env_vars": env}, "log_to_driver": True}
    ensure_ray(_cfg("ray.dashboard=true"))  # its own dashboard, on loopback: State API calls go there
    call = ray_init_calls[2]
    assert call["include_dashboard"] and call["dashboard_host"] == "127.0.0.1"
    assert call["runtime_env"]["env_vars"]["RAY_API_SERVER_ADDRESS"] == f"http://127.0.0.1:{call['dashboard_port']}"


def test_ensure_ray_joins_a_cluster_without_setting_a_jobs_env_vars_again(ray_init_calls, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    monkeypatch.setenv(JOB_ENV, json.dumps({"runtime_env": {"env_vars": {"RAY_DEDUP_LOGS": "0"}}}))
    ensure_ray(Config())
    others = {k: v for k, v in DEFAULT_ENV.items() if k != "RAY_DEDUP_LOGS"}
    assert ray_init_calls == [{"address": "10.0.0.1:6379", "runtime_env": {"env_vars": others},
                               "log_to_driver": True}]
    ensure_ray(_cfg("ray.address=ray://head:10001"))  # the config's address wins over RAY_ADDRESS
    assert ray_init_calls[1]["address"] == "ray://head:10001"


def test_ensure_ray_leaves_a_running_ray_alone(ray_init_calls, monkeypatch):
    import ray

    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    ensure_ray(_cfg("ray.num_cpus=3"))
    assert ray_init_calls == []


def test_a_local_ray_too_small_for_the_run_is_an_error_not_a_hang(monkeypatch):
    import ray

    from raytrain.ray_env import check_cpus_fit

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})
    cfg = _cfg("scaling.num_workers=2", "scaling.cpus_per_worker=1", "data.decode_cpus=0.5", "data.decode_actors=1")
    with pytest.raises(ValueError, match=r"reserves 3 CPUs \(2 workers x 1 .* \+ 2 decode actors x 0.5 .*"
                                         r"this Ray has 2 .* ray.num_cpus=3"):
        check_cpus_fit(cfg)  # data.per_rank_plan: one decode pool per rank
    check_cpus_fit(_cfg("scaling.num_workers=1", "data.decode_cpus=0.5"))  # 1.5 of 2: fits
    check_cpus_fit(_cfg("ray.address=10.0.0.1:6379", "scaling.num_workers=8"))  # a cluster may autoscale
    # In-run evaluation (eval.every) starts the eval pool beside the training pools: 2 + 1 + 1 > 3.
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 3.0})
    fits_without_eval = ("scaling.num_workers=2", "data.decode_cpus=0.5", "data.decode_actors=2",
                         "data.per_rank_plan=false")
    check_cpus_fit(_cfg(*fits_without_eval))  # eval at the end only: its pool follows the training one
    with pytest.raises(ValueError, match=r"reserves 4 CPUs .* \+ 2 eval decode actors .*eval.every"):
        check_cpus_fit(_cfg(*fits_without_eval, "checkpoint.every=2", "eval.every=2"))


def test_a_local_ray_that_misses_its_startup_deadline_is_started_again(ray_init_calls, monkeypatch, capsys):
    import ray

    real = ray.init
    attempts = []

    def flaky(**kwargs):
        attempts.append(kwargs)
        if len(attempts) < 3:
            raise Exception("The current node timed out during startup. This could ...")  # noqa: TRY002 -- as Ray does
        real(**kwargs)

    monkeypatch.setattr(ray, "init", flaky)
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    ensure_ray(Config())
    assert len(attempts) == 3 and len(ray_init_calls) == 1
    assert capsys.readouterr().out.count("did not register within Ray's fixed 30 s") == 2
    monkeypatch.setattr(ray, "init", lambda **kwargs: (_ for _ in ()).throw(RuntimeError("other")))
    with pytest.raises(RuntimeError, match="other"):  # any other failure is not retried
        ensure_ray(Config())
