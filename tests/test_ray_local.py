"""A local Ray started by raytrain listens on loopback only and keeps its auth token file private."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from raytrain.ray_local import (
    LOOPBACK_ENV,
    NO_API_SERVER,
    is_loopback,
    local_init_kwargs,
    loopback_node_ip,
    make_private,
)

REPO = Path(__file__).resolve().parents[1]


def test_local_init_kwargs_start_a_loopback_ray_without_dashboard():
    kwargs = local_init_kwargs(num_cpus=3, object_store_mb=100)
    assert kwargs == {"address": "local", "include_dashboard": False, "_node_ip_address": "127.0.0.1",
                      "num_cpus": 3, "object_store_memory": 100 * 2**20}
    assert "num_cpus" not in local_init_kwargs(None, None)
    with_dashboard = local_init_kwargs(None, None, dashboard=True)  # ray.dashboard=true: on loopback
    assert with_dashboard["include_dashboard"] and with_dashboard["dashboard_host"] == "127.0.0.1"


def test_is_loopback_knows_ipv4_ipv6_and_mapped_forms():
    assert all(map(is_loopback, ["127.0.0.1", "127.0.1.1", "::1", "::ffff:127.0.0.1"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "192.0.2.2", "::ffff:192.0.2.2"]))


def test_make_private_tightens_a_readable_token_file_only(tmp_path):
    token = tmp_path / "auth_token"
    assert not make_private(token)  # missing: nothing to do
    token.write_text("x")
    token.chmod(0o644)
    assert make_private(token)
    assert token.stat().st_mode & 0o777 == 0o600
    assert not make_private(token)


def test_loopback_node_ip_is_undone_after_ray_starts(monkeypatch):
    import ray
    from ray._private import ray_constants, services

    for key in LOOPBACK_ENV:
        monkeypatch.delenv(key, raising=False)
    before = ray_constants.ENABLE_RAY_CLUSTER
    with loopback_node_ip():
        if not ray.is_initialized():  # an earlier test's Ray in this process has its node IP cached
            assert services.get_node_ip_address() == "127.0.0.1"  # resolved, not looked up
        assert all(os.environ[k] == v for k, v in LOOPBACK_ENV.items())
    assert ray_constants.ENABLE_RAY_CLUSTER == before
    assert not any(k in os.environ for k in LOOPBACK_ENV)


# raytrain's own init path (ensure_ray), in a fresh process: the session's ray_session fixture starts
# Ray itself and would hide what ensure_ray does. A task and an actor start workers, whose core-worker
# servers listen too.
PROBE = textwrap.dedent("""
    import json, os
    from raytrain.config import Config
    from raytrain.ray_env import ensure_ray
    from raytrain.ray_local import auth_token_path, listening_sockets, running_ray_cluster
    if running_ray_cluster():
        print(json.dumps({"skip": "a Ray cluster runs on this machine: ensure_ray joins it"}))
        raise SystemExit
    ensure_ray(Config().replace(**{"ray.num_cpus": 1, "ray.object_store_mb": 80}))
    import ray
    @ray.remote(num_cpus=0.1)
    def task():
        return os.environ.get("RAY_API_SERVER_ADDRESS")
    @ray.remote(num_cpus=0.1)
    class Echo:
        def ping(self):
            return os.getpid()
    echo = Echo.remote()
    api_server, _ = ray.get([task.remote(), echo.ping.remote()])
    token = auth_token_path()
    print(json.dumps({"listeners": listening_sockets(), "api_server": api_server,
                      "token_mode": token.stat().st_mode & 0o777 if token.exists() else None}))
    ray.shutdown()
""")


@pytest.mark.timeout(120)
def test_a_local_run_listens_on_loopback_only_and_its_token_is_private(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH")}
    env.update(HOME=str(tmp_path), PYTHONPATH=str(REPO))  # Ray writes a fresh ~/.ray/auth_token here
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, cwd=tmp_path, capture_output=True,
                         text=True, timeout=110, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    if "skip" in report:
        pytest.skip(report["skip"])
    listeners = report["listeners"]
    names = {name for _, _, _, name in listeners}
    assert any("gcs_server" in n for n in names) and any("raylet" in n for n in names), listeners
    exposed = [row for row in listeners if not is_loopback(row[0])]
    assert not exposed, f"listening beyond loopback: {exposed}"
    assert report["token_mode"] == 0o600
    assert report["api_server"] == NO_API_SERVER  # a worker's State API calls never reach another Ray
