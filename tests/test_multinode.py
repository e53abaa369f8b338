"""Tier 3: a real two-node Ray cluster on this machine (head + a second `ray start` with its own
resources), token auth on, and a tiny training job sent with `ray job submit` exactly as
docs/cluster.md shows: the two Train workers land on different nodes (STRICT_SPREAD), the decode
actors on the node with the `decode` resource, and logs, checkpoints, TensorBoard and metrics.json
land in the (shared, declared so) storage path. Both nodes are always stopped, by process id."""

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from tiny import tiny_overrides  # tests/tiny.py

pytestmark = [pytest.mark.ray, pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's bin: `ray`, `raytrain` and `python` for the raylets

# The runtime env of docs/cluster.md (keep the two in step).
RUNTIME_ENV = {
    "excludes": ["data/", "runs/", "results/", ".venv/", ".git/", "*.egg-info/", "__pycache__/",
                 ".pytest_cache/", ".ruff_cache/"],
    "env_vars": {"RAY_DATA_USE_DATASOURCE_V2": "0", "RAY_TRAIN_METRICS_ENABLED": "0",
                 "RAY_DEDUP_LOGS": "0", "TOKENIZERS_PARALLELISM": "false"},
}


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def _session_pids(marker: str) -> set[int]:
    """Processes whose command line names ``marker`` (this test's unique temp dir) and all their
    descendants: only this cluster's processes, never another Ray session's (no `ray stop`)."""
    parents, roots = {}, set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
            ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        parents[int(entry)] = ppid
        if marker in cmd and int(entry) != os.getpid():
            roots.add(int(entry))
    found, grew = set(roots), True
    while grew:
        grew = False
        for pid, ppid in parents.items():
            if ppid in found and pid not in found:
                found.add(pid)
                grew = True
    return found


def _stop(marker: str) -> None:
    pids = _session_pids(marker)
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 0.0)):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + wait
        while wait and time.time() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
            time.sleep(0.2)
        pids = {p for p in pids | _session_pids(marker) if Path(f"/proc/{p}").exists()}


@pytest.fixture
def two_node_cluster(tmp_path):
    temp_dir = tempfile.mkdtemp(prefix="rtmn", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    token_file = tmp_path / "auth_token"
    token = secrets.token_hex(32)
    token_file.write_text(token)
    token_file.chmod(0o600)
    env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}", "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN_PATH": str(token_file), "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    (gcs, dash, client, *agent) = _free_ports(11)
    common = ["--node-ip-address", "127.0.0.1", "--object-store-memory", str(150 * 2**20),
              "--disable-usage-stats"]

    def node_ports(i):
        a = agent[4 * i: 4 * i + 4]
        return ["--dashboard-agent-listen-port", str(a[0]), "--dashboard-agent-grpc-port", str(a[1]),
                "--runtime-env-agent-port", str(a[2]), "--metrics-export-port", str(a[3])]

    def run(args, **kw):
        return subprocess.run([str(BIN / "ray"), *args], check=False, env=env, capture_output=True, text=True, **kw)

    try:
        # Head: 1 CPU (one Train worker); second node: 2 CPUs and the `decode` resource (the other
        # worker and the decode actors). Separate agent ports: both nodes live on this machine.
        head = run(["start", "--head", "--port", str(gcs), "--num-cpus", "1", "--temp-dir", temp_dir,
                    "--include-dashboard", "true", "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash),
                    "--ray-client-server-port", str(client), *common, *node_ports(0)], timeout=120)
        assert head.returncode == 0, head.stdout + head.stderr
        worker = run(["start", "--address", f"127.0.0.1:{gcs}", "--num-cpus", "2",
                      "--resources", json.dumps({"decode": 1}), *common, *node_ports(1)], timeout=120)
        assert worker.returncode == 0, worker.stdout + worker.stderr
        yield {"env": env, "dashboard": f"http://127.0.0.1:{dash}", "token": token, "run": run}
    finally:
        _stop(temp_dir)


def _json_rows(text: str) -> list[dict]:
    return json.loads(text[text.index("["):])


def test_ray_job_submit_two_nodes(two_node_cluster, synth_dir, tmp_path):
    t0 = time.time()
    c = two_node_cluster
    run, address = c["run"], ["--address", c["dashboard"]]
    storage = tmp_path / "shared_runs"  # both nodes are this machine: the folder is shared, declared so
    job_id = f"raytrain_mn_{secrets.token_hex(4)}"
    overrides = [*tiny_overrides(synth_dir),  # the tiny fit of tests/conftest.py, as CLI overrides
        f"run.storage_path={storage}", "run.name=mn",
        # multi-node: one worker per node, decode actors on the `decode` node, shared storage declared
        "train.max_steps=4", "scaling.cpus_per_worker=0.5", "scaling.placement_strategy=STRICT_SPREAD",
        "data.decode_resource=decode", "data.decode_resource_per_actor=0.5", "data.decode_cpus=0.5",
        "run.shared_storage=true"]
    submit = run(["job", "submit", *address, "--submission-id", job_id, "--working-dir", str(REPO),
                  "--runtime-env-json", json.dumps(RUNTIME_ENV), "--", "raytrain", "train", *overrides],
                 timeout=420)
    status = run(["job", "status", *address, job_id], timeout=60)
    logs = run(["job", "logs", *address, job_id], timeout=60).stdout
    assert submit.returncode == 0 and "succeeded" in status.stdout.lower(), submit.stdout[-4000:] + submit.stderr[-4000:] + logs[-4000:]
    elapsed = time.time() - t0
    print(f"multi-node job: {elapsed:.0f} s from submit to SUCCEEDED")

    # Logs: the CLI's summary and each rank's node.
    assert "latest checkpoint:" in logs and "run folder:" in logs, logs[-4000:]
    nodes = {n["node_id"]: n for n in _json_rows(run(["list", "nodes", *address, "--format", "json"],
                                                     timeout=60).stdout)}
    assert len(nodes) == 2
    line = next(ln for ln in logs.splitlines() if "worker nodes (rank: node id)" in ln)
    ranks = json.loads(line.split("):", 1)[1].strip())  # {"0": "node id", "1": "node id"}
    assert set(ranks) == {"0", "1"} and set(ranks.values()) == set(nodes), line

    # Decode actors ran only on the node that has the `decode` resource.
    decode_node = next(i for i, n in nodes.items() if "decode" in (n.get("resources_total") or {}))
    actors = _json_rows(run(["list", "actors", *address, "--format", "json", "--detail", "--limit", "1000"],
                            timeout=60).stdout)
    decode_actors = [a for a in actors if "DecodeClips" in (a.get("class_name") or "") + (a.get("name") or "")]
    assert decode_actors and {a["node_id"] for a in decode_actors} == {decode_node}

    # Results in storage_path: checkpoints, TensorBoard, metrics.json.
    run_dir = storage / "mn"
    checkpoints = sorted(run_dir.glob("checkpoint_*"))
    assert checkpoints, list(run_dir.iterdir())
    from raytrain.train.state import find_checkpoint, load_training_state

    assert load_training_state(find_checkpoint(str(run_dir)))["step"] == 4
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"t2v_R1", "v2t_R1"} <= set(metrics) and metrics["step"] == 4

    # Token auth stayed on and nothing printed the token.
    for text in (submit.stdout, submit.stderr, logs, status.stdout):
        assert c["token"] not in text
    env_no_token = {**c["env"], "RAY_AUTH_TOKEN_PATH": str(tmp_path / "missing")}
    denied = subprocess.run([str(BIN / "ray"), "job", "list", *address], check=False, env=env_no_token,
                            capture_output=True, text=True, timeout=60)
    assert denied.returncode != 0
