"""Tier 1: run.storage_path as a local folder, a shared path or a URI (TensorBoard, metrics.json),
the multi-node shared-storage check, and the cluster config keys."""

import json

import pytest

from raytrain.config import Config, ConfigError, apply_overrides
from raytrain.data.pipeline import decode_remote_args
from raytrain.ray_env import DEFAULT_ENV, job_env_vars
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


def test_job_env_vars_are_not_set_twice(monkeypatch):
    assert job_env_vars() == {} or "RAY_JOB_CONFIG_JSON_ENV_VAR" in __import__("os").environ
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps(
        {"runtime_env": {"working_dir": "gcs://x.zip", "env_vars": {"RAY_DATA_USE_DATASOURCE_V2": "0"}}}))
    assert job_env_vars() == {"RAY_DATA_USE_DATASOURCE_V2": "0"}
    assert "RAY_DATA_USE_DATASOURCE_V2" in DEFAULT_ENV
