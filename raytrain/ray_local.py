"""A local Ray started by raytrain: every listener on loopback, the auth token file private.

Measured on Ray 2.60 (docs/faults.md, "Network exposure of a local run"): a plain ``ray.init()`` puts
GCS, raylet, driver and actors on every interface, the dashboard agent (Prometheus metrics) on
0.0.0.0 and the runtime-env agent on the LAN address. Ray binds its servers to the node IP when that
is loopback, but ``ray.init(_node_ip_address="127.0.0.1")`` alone is silently turned back into the
LAN address (``services.resolve_ip_for_localhost``) unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

LOOPBACK = "127.0.0.1"
# Makes Ray keep a loopback node IP instead of resolving it to the LAN address (ray_constants.py).
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


# Where a local Ray's processes send State API calls when it has no dashboard: a closed port, so a
# call fails at once (Ray Train's PlacementGroupCleaner logs a warning and polls on) instead of
# finding *another* Ray of this machine (docs/faults.md, "Ray 2.60's own failures").
NO_API_SERVER = f"http://{LOOPBACK}:1"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def local_init_kwargs(num_cpus: int | None, object_store_mb: int | None, dashboard: bool = False,
                      dashboard_port: int | None = None) -> dict:
    """``ray.init`` arguments of a local Ray that only this machine can reach; ``dashboard``
    (``ray.dashboard``): its dashboard too, on loopback at ``dashboard_port`` (the State API that Ray
    Train's PlacementGroupCleaner polls; ~0.9 GB more memory, docs/faults.md)."""
    kwargs: dict = {"address": "local", "include_dashboard": dashboard, "_node_ip_address": LOOPBACK}
    if dashboard:
        kwargs["dashboard_host"] = LOOPBACK
        if dashboard_port:
            kwargs["dashboard_port"] = dashboard_port
    if num_cpus:
        kwargs["num_cpus"] = num_cpus
    if object_store_mb:
        kwargs["object_store_memory"] = object_store_mb * 2**20
    return kwargs


@contextlib.contextmanager
def temporary_env(values: dict[str, str]):
    """``values`` in ``os.environ`` while the block runs (the processes a ``ray.init`` starts inherit
    them), as they were afterwards: a later ``ray job submit`` from this process, or a ``ray start``
    it spawns, must not inherit a local Ray's settings (``RAY_API_SERVER_ADDRESS`` overrides even an
    explicit ``--address``)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def loopback_node_ip():
    """While Ray starts: the env (inherited by GCS, raylet, agents, workers) and the driver's constant,
    read once when ``ray`` is imported, say "no multi-node cluster". Restored afterwards so a later
    ``ray.init(address=cluster)`` in this process resolves addresses as Ray normally does."""
    from ray._private import ray_constants

    saved_flag = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        with temporary_env(LOOPBACK_ENV):
            yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag


def api_server_env(dashboard_port: int | None) -> dict[str, str]:
    """``RAY_API_SERVER_ADDRESS`` for every process of a local Ray: its own dashboard, or none.

    Ray 2.60 resolves the State API server of a call without an address from RAY_ADDRESS, else from
    ``/tmp/ray/ray_current_cluster``: the Ray started *last* on the machine. So Ray Train's
    PlacementGroupCleaner, asking every second whether its controller lives, asks any newer Ray with a
    dashboard (a notebook's ``ray.init()``), hears "no such actor" and removes the run's placement
    group: the training dies ("Destroying worker since its placement group was removed").
    Pinning the address keeps every State API call of this Ray on this Ray."""
    return {"RAY_API_SERVER_ADDRESS": f"http://{LOOPBACK}:{dashboard_port}" if dashboard_port else NO_API_SERVER}


def auth_token_path() -> Path:
    """The token file Ray 2.60 reads (its C++ AuthenticationTokenLoader): RAY_AUTH_TOKEN_PATH, else
    ``~/.ray/auth_token`` (which ``ray.init`` creates with the umask's mode, 0644 usually)."""
    return Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")


def make_private(path: Path) -> bool:
    """chmod 0600 a file that group or others may read; True when the mode was changed."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return False
    if not mode & 0o077:
        return False
    path.chmod(0o600)
    return True


def running_ray_cluster() -> str | None:
    """The address a bare ``ray.init()`` would join (RAY_ADDRESS or a ``ray start`` on this machine),
    None when it would start its own Ray."""
    from ray._private import services

    return services.canonicalize_bootstrap_address(None)


def listening_sockets(root_pid: int | None = None) -> list[tuple[str, int, int, str]]:
    """``(ip, port, pid, process name)`` of the TCP listeners of a process and its descendants (a local
    Ray's GCS, raylet, agents and workers descend from the driver that started it)."""
    import ray

    assert ray  # imported first: it puts its bundled psutil (ray/thirdparty_files) on sys.path
    import psutil

    root = psutil.Process(root_pid)
    found = []
    for proc in [root, *root.children(recursive=True)]:
        try:
            name = proc.name()
            found += [(c.laddr.ip, c.laddr.port, proc.pid, name) for c in proc.net_connections(kind="tcp")
                      if c.status == psutil.CONN_LISTEN]
        except psutil.Error:  # exited meanwhile
            continue
    return sorted(found)


def is_loopback(ip: str) -> bool:
    """127.0.0.0/8, ::1 and their IPv4-mapped IPv6 form (gRPC's "::ffff:127.0.0.1")."""
    import ipaddress

    addr = ipaddress.ip_address(ip)
    mapped = getattr(addr, "ipv4_mapped", None)
    return (mapped or addr).is_loopback
