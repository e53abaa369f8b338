"""Connecting to (or starting) Ray with settings that work from a laptop to a cluster."""

from __future__ import annotations

import json
import os
from pathlib import Path

from raytrain.config import Config
from raytrain.ray_local import (
    api_server_env,
    auth_token_path,
    free_port,
    local_init_kwargs,
    loopback_node_ip,
    make_private,
    running_ray_cluster,
    temporary_env,
)

# Set before Ray is imported: faster Parquet reads, no metrics/usage threads, plain logs.
DEFAULT_ENV = {
    "RAY_DATA_USE_DATASOURCE_V2": "0",
    "RAY_TRAIN_METRICS_ENABLED": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_DEDUP_LOGS": "0",
    "TOKENIZERS_PARALLELISM": "false",
    # Ray Train's print patch sends a worker's print() both to its stdout and to a console log
    # handler: every line reached the driver twice. Off: each print once, through the worker's stdout.
    "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",
}


def set_default_env() -> None:
    for key, value in DEFAULT_ENV.items():
        os.environ.setdefault(key, value)


def job_env_vars() -> dict[str, str]:
    """The env vars of the submitted job's runtime env (empty outside ``ray job submit``)."""
    raw = os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR")
    if not raw:
        return {}
    try:
        return dict((json.loads(raw).get("runtime_env") or {}).get("env_vars") or {})
    except (ValueError, AttributeError):
        return {}


def ensure_ray(cfg: Config, quiet: bool = True) -> None:
    """Join ``ray.address`` / ``RAY_ADDRESS`` (e.g. inside ``ray job submit``) or start a local Ray."""
    set_default_env()
    import ray

    if ray.is_initialized():
        return
    if not quiet:  # the workers' lines reach this console: filtered to raytrain's, all in the run's log
        from raytrain.console import install

        install(None if "://" in cfg.run.storage_path else Path(cfg.run.storage_path) / cfg.run.name)
    address = cfg.ray.address or os.environ.get("RAY_ADDRESS")
    # Inside `ray job submit` the job's runtime env (working_dir, env_vars) applies to every worker and
    # Ray refuses a driver runtime env that sets the same env var again: only add the missing ones.
    in_job = job_env_vars()
    runtime_env = {"env_vars": {k: os.environ[k] for k in DEFAULT_ENV if k not in in_job}}
    if address:  # a cluster: its own `ray start` settings decide where it listens
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=True)
    elif running_ray_cluster():  # a `ray start` on this machine: join it, as a bare ray.init() does
        ray.init(runtime_env=runtime_env, log_to_driver=not quiet)
    else:  # raytrain's own Ray: loopback only (docs/faults.md, "Network exposure of a local run"),
        # and its State API calls kept on it (ray_local.api_server_env)
        port = free_port() if cfg.ray.dashboard else None
        pinned = api_server_env(port)
        runtime_env["env_vars"].update(pinned)
        with loopback_node_ip(), temporary_env(pinned):  # the GCS and raylet inherit it, and every worker
            start_local(lambda: ray.init(runtime_env=runtime_env, log_to_driver=not quiet, **local_init_kwargs(
                cfg.ray.num_cpus, cfg.ray.object_store_mb, cfg.ray.dashboard, port)))
    make_private(auth_token_path())  # Ray writes it world-readable (umask)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False


START_ATTEMPTS = 3


def start_local(init) -> None:
    """``init()`` (a local ``ray.init``), again when Ray's node misses its fixed 30 s to register with
    its GCS (``ray/_private/node.py``: "The current node timed out during startup"), which a loaded
    machine (another Ray training beside it, on 2 cores) can take."""
    import ray

    for attempt in range(1, START_ATTEMPTS + 1):
        try:
            init()
            return
        except Exception as exc:  # Ray raises a bare Exception for it
            if "timed out during startup" not in str(exc) or attempt == START_ATTEMPTS:
                raise
            print(f"[raytrain] Ray's node did not register within Ray's fixed 30 s (a busy machine?); "
                  f"starting it again ({attempt + 1} of {START_ATTEMPTS})", flush=True)
            ray.shutdown()


def train_cpus(cfg: Config) -> tuple[float, float]:
    """``(Train workers' CPUs, training decode actors' CPUs)`` a run reserves while it trains
    (``trial_resources`` adds a sweep trial's eval pool and driver)."""
    pools, each = cfg.train_decode_pools
    return cfg.scaling.num_workers * cfg.scaling.cpus_per_worker, pools * each * cfg.data.decode_cpus


def check_cpus_fit(cfg: Config) -> None:
    """Raise when the run reserves more CPUs at its peak than this Ray has and it cannot grow
    (raytrain's local Ray, or a ``ray start`` on this machine): Ray would wait for them forever
    ("Pending Demands" in the log, nothing on the console). The peak is the Train workers plus the
    training decode actors, and the eval pool beside them when ``eval.every`` evaluates mid-epoch (at
    the end alone it starts after the training pools are gone). A remote cluster (``ray.address`` /
    ``RAY_ADDRESS``) may autoscale, so it is not checked."""
    import math

    import ray

    if cfg.ray.address or os.environ.get("RAY_ADDRESS") or not ray.is_initialized():
        return
    total = float(ray.cluster_resources().get("CPU", 0.0))
    pools, each = cfg.train_decode_pools
    workers, decoders = train_cpus(cfg)
    eval_actors = cfg.data.decode_actors if cfg.needs_eval else 0
    parts = (f"{cfg.scaling.num_workers} workers x {cfg.scaling.cpus_per_worker:g} (scaling.cpus_per_worker)"
             f" + {pools * each} decode actors x {cfg.data.decode_cpus:g} (data.decode_cpus)")
    if cfg.eval.every > 0 and eval_actors:
        decoders += eval_actors * cfg.data.decode_cpus
        parts += f" + {eval_actors} eval decode actors (data.decode_actors, beside them with eval.every)"
    elif eval_actors:
        decoders = max(decoders, eval_actors * cfg.data.decode_cpus)
    if workers + decoders > total + 1e-9:
        raise ValueError(
            f"the run reserves {workers + decoders:g} CPUs ({parts}) but this Ray has {total:g} and would wait "
            f"for them forever: set ray.num_cpus (a local Ray's logical CPUs, e.g. ray.num_cpus="
            f"{math.ceil(workers + decoders)}) or lower those keys")
