"""External fault drills (issue 19): faults injected from outside the program into ``raytrain train``
run as a subprocess on the tiny drill config (``drills.drill_config``), as a user or the OS would
inject them: SIGKILL of the driver and of a decode actor, a checkpoint truncated or half-written on
disk, a video corrupted while the run reads its split, a disk that fills. Used by ``bench/faults.py``.

Each drill returns an :class:`ExternalResult`: whether the fault was injected, whether the run ended
as designed, the steps trained again, the final step and weights, and the leaks left behind — temp
files in the run folder (``*.tmp``, ``.checkpoint-tmp``) and in ``/tmp`` (``raytrain-ckpt-*``), and the
TCP listeners the killed program's processes kept open (and for how long).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from drills import drill_config

from raytrain.config import Config, apply_overrides, dump_config
from raytrain.data.manifest import load_manifest
from raytrain.data.plan import build_plan
from raytrain.ray_local import is_loopback
from raytrain.train.faults import read_events
from raytrain.train.state import STATE_FILE, find_checkpoint, load_training_state

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_S = 600
CORRUPT_STEPS = 48  # the corrupted-video drill's plan (8 epochs of the drill's 6 steps): outruns the read-ahead


@dataclass
class ExternalResult:
    name: str
    injected: bool = False
    as_designed: bool = False
    steps_lost: int = 0
    final_step: int | None = None
    model: dict | None = None
    metrics: dict = field(default_factory=dict)  # the final checkpoint's (the drills do not evaluate: no metrics.json)
    leaks: list[str] = field(default_factory=list)
    note: str = ""


class Train:
    """``raytrain train`` of ``cfg`` in a subprocess of its own session (its Ray descends from it)."""

    def __init__(self, cfg: Config, workdir: Path, tag: str):
        self.cfg, self.run = cfg, Path(cfg.run.storage_path) / cfg.run.name
        config = workdir / f"{cfg.run.name}-{tag}.yaml"
        dump_config(cfg, config)
        self.log = workdir / f"{cfg.run.name}-{tag}.log"
        env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        env.pop("RAY_ADDRESS", None)
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "raytrain.cli", "train", "--config", str(config)],
                                         stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO, start_new_session=True)

    def step(self) -> int:
        try:
            return int(json.loads((self.run / "step_reached.json").read_text())["step"])
        except (OSError, ValueError, KeyError):
            return 0

    def wait_for_step(self, step: int, timeout_s: float = TIMEOUT_S) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.proc.poll() is None:
            if self.step() >= step:
                return True
            time.sleep(0.2)
        return self.step() >= step

    def finish(self) -> int:
        try:
            return self.proc.wait(TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return -9

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def descendants(self) -> list:
        import ray

        assert ray  # its bundled psutil
        import psutil

        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            return []


def _listeners(procs: list) -> list[tuple[str, int, str]]:
    """``(ip, port, process name)`` of the TCP listeners of ``procs``."""
    import psutil

    found = []
    for p in procs:
        try:
            found += [(c.laddr.ip, c.laddr.port, p.name()) for c in p.net_connections(kind="tcp")
                      if c.status == psutil.CONN_LISTEN]
        except psutil.Error:
            continue
    return found


def _temp_leaks(run: Path, tmp_before: set[str]) -> list[str]:
    leaks = []
    for p in run.rglob("*"):
        if p.is_file() and (p.name.endswith(".tmp") or ".checkpoint-tmp" in p.parts):
            leaks.append(f"{p.relative_to(run)} ({p.stat().st_size} B)")
    new_tmp = sorted({str(p) for p in Path("/tmp").glob("raytrain-ckpt-*")} - tmp_before)
    return leaks + [f"{p} (/tmp)" for p in new_tmp]


def _final(result: ExternalResult, run: Path, rerun_start: int | None, fault_step: int | None) -> None:
    try:
        state = load_training_state(find_checkpoint(run))
        result.model, result.final_step = state["model"], int(state["step"])
        result.metrics = dict(state.get("extra", {}).get("metrics", {}))
    except FileNotFoundError:
        pass
    if rerun_start is not None and fault_step is not None:
        result.steps_lost = max(0, fault_step - rerun_start)


def _rerun_start(run: Path, after: float) -> int | None:
    starts = [e["start_step"] for e in read_events(run) if "start_step" in e and e["time"] > after]
    return starts[0] if starts else None


def driver_sigkill(base: Config, workdir: Path, name: str) -> ExternalResult:
    """SIGKILL of the driver alone (as the OOM killer or ``kill -9 PID`` does) after step 3, then the
    same command again: it resumes from the step-2 checkpoint. Leaks: what the dead driver's Ray
    processes keep listening on, sampled until they are gone (at most 90 s, then killed)."""
    cfg, result, before = _config(base, name, workdir), ExternalResult(name), _tmp_set()
    first = Train(cfg, workdir, "first")
    if first.wait_for_step(3):
        procs = first.descendants()
        exposed = sorted({f"{name} {ip}:{port}" for ip, port, name in _listeners(procs) if not is_loopback(ip)})
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait()
        killed_at, killed_step, result.injected = time.time(), first.step(), True
        gone_after, left = _wait_gone(procs, 90)
        listeners = _listeners(procs) if gone_after is None else []
        result.note = (f"{len(left)} listener(s) of the dead driver's Ray at +1 s, gone after {gone_after:.0f} s"
                       if left and gone_after is not None else
                       f"listeners still open after 90 s: {listeners}" if listeners else "no listener left at +1 s")
        result.note += f"; while training, beyond loopback: {', '.join(exposed) or 'none'}"
        for p in procs:  # the leftovers are not the next drill's
            _kill_quietly(p)
        second = Train(cfg, workdir, "rerun")
        rc = second.finish()
        result.as_designed = rc == 0
        _final(result, first.run, _rerun_start(first.run, killed_at), killed_step)
    result.leaks = _temp_leaks(first.run, before)
    return result


def train_worker_sigkill_no_retries(base: Config, workdir: Path, name: str) -> ExternalResult:
    """SIGKILL of one Train worker after step 3 with ``train.max_failures=0`` (no restart in the run):
    the run must stop with an error, and the same command again resume from the step-2 checkpoint."""
    cfg, result, before = _config(base, name, workdir), ExternalResult(name), _tmp_set()
    cfg = apply_overrides(cfg, ["train.max_failures=0"])
    first = Train(cfg, workdir, "first")
    if first.wait_for_step(3):
        workers = [p for p in first.descendants() if _cmdline_has(p, "RayTrainWorker")]
        if workers:
            _kill_quietly(workers[-1])
            killed_at, killed_step, result.injected = time.time(), first.step(), True
            stopped = first.finish()
            second = Train(cfg, workdir, "rerun")
            rc = second.finish()
            result.as_designed = stopped != 0 and rc == 0
            start = _rerun_start(first.run, killed_at)
            _final(result, first.run, start, killed_step)
            result.note = (f"first run exit {stopped} ({_last_line(first.output())[:60]}); "
                           f"rerun from step {start}, exit {rc}")
    if not result.injected:
        first.finish()
    result.leaks = _temp_leaks(first.run, before)
    return result


def decode_actor_sigkill(base: Config, workdir: Path, name: str) -> ExternalResult:
    """SIGKILL of one decode actor (a Ray Data map worker) after step 1: Ray Data restarts it and the
    run finishes."""
    cfg, result, before = _config(base, name, workdir), ExternalResult(name), _tmp_set()
    run = Train(cfg, workdir, "only")
    if run.wait_for_step(1):
        actors = [p for p in run.descendants() if _is_decode_actor(p)]
        if actors:
            _kill_quietly(actors[0])
            result.injected = True
            result.note = f"killed {actors[0].name()} (1 of {len(actors)} decode actors)"
    rc = run.finish()
    result.as_designed = rc == 0
    _final(result, run.run, None, None)
    result.leaks = _temp_leaks(run.run, before)
    if rc:
        result.note += f"; exit {rc}: {_last_line(run.output())}"
    return result


def damaged_newest_checkpoint(how: str) -> Callable[[Config, Path, str], ExternalResult]:
    """A run stopped at step 3 (checkpoints 2 and 3); then checkpoint 3 is damaged on disk — ``how``:
    ``truncated`` (its state.pt cut to half) or ``half-written`` (its progress.json removed) — and the
    run rerun: it must resume from step 2, report the broken one and finish."""

    def drill(base: Config, workdir: Path, name: str) -> ExternalResult:
        cfg, result, before = _config(base, name, workdir), ExternalResult(name), _tmp_set()
        first = Train(apply_overrides(cfg, ["train.stop_at_step=3"]), workdir, "first")
        if first.finish() == 0:
            newest = max((p for p in first.run.glob("checkpoint_*") if (p / "progress.json").is_file()),
                         key=lambda p: json.loads((p / "progress.json").read_text())["step"])
            state = newest / STATE_FILE
            if how == "truncated":
                state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
            else:
                (newest / "progress.json").unlink()
            result.injected, started = True, time.time()
            second = Train(cfg, workdir, "rerun")
            result.as_designed = second.finish() == 0
            _final(result, first.run, _rerun_start(first.run, started), 3)
            said = re.search(r"\[raytrain\][^\n]*(broken|incomplete|skipp)[^\n]*", second.output())
            result.note = said.group(0)[:110] if said else _last_line(second.output())
        result.leaks = _temp_leaks(first.run, before)
        return result

    return drill


def video_corrupted_mid_run(base: Config, workdir: Path, name: str) -> ExternalResult:
    """With ``data.on_bad_video=skip``: after step 1, a clip planned for the last step is overwritten
    with random bytes (a disk error, a sync tool rewriting it); the run must skip it and finish.

    The plan is 48 steps (8 epochs of the drill's clips, every clip in each), so the decode actors'
    read-ahead cannot have read the victim's later epochs by step 1: on the 4-step plan they had
    read every clip before the fault, which was then injected but never met."""
    work = workdir / "corrupt"
    work.mkdir(parents=True, exist_ok=True)
    cfg = _config(base, name, workdir)
    rows = load_manifest(cfg.data.manifest)
    copy = _copied_manifest(rows, work)
    train = [r for r in load_manifest(copy) if r.split == cfg.data.train_split]
    global_batch = cfg.train.batch_size * cfg.scaling.num_workers
    epochs = -(-CORRUPT_STEPS // (len(train) // global_batch))
    cfg = apply_overrides(cfg, [f"data.manifest={copy}", "data.on_bad_video=skip", f"train.epochs={epochs}",
                                f"train.max_steps={CORRUPT_STEPS}", f"checkpoint.every={CORRUPT_STEPS // 2}"])
    result, before = ExternalResult(name), _tmp_set()
    plan = build_plan(train, global_batch, cfg.train.seed, 0, CORRUPT_STEPS)
    clips = plan.column("clip").to_pylist()
    victim_clip = clips[-1]
    victim = Path(train[victim_clip].path)
    steps = plan.column("step").to_pylist()
    planned = sorted({s for s, c in zip(steps, clips, strict=True) if c == victim_clip and s > 1})
    run = Train(cfg, workdir, "only")
    if run.wait_for_step(1):
        victim.write_bytes(os.urandom(victim.stat().st_size))
        result.injected = True
    rc = run.finish()
    _final(result, run.run, None, None)
    skipped = int(result.metrics.get("bad_videos_skipped", 0))
    result.as_designed = rc == 0 and result.final_step == cfg.train.max_steps and skipped >= 1
    result.note = (f"bad_videos_skipped={skipped} ({victim.name} corrupted after step 1; planned again at "
                   f"{len(planned)} later steps, {planned[:3]}...; {CORRUPT_STEPS}-step plan)")
    result.leaks = _temp_leaks(run.run, before)
    return result


def disk_fills(base: Config, workdir: Path, name: str) -> ExternalResult:
    """The run folder on a 100 MB tmpfs (room for the tiny model's 20 MB checkpoints, not for a cache
    that keeps its default 2 GB free) with the frame cache on (its default place is inside the run
    folder): the cache must stop writing with one message and the run finish with its checkpoints."""
    mount = workdir / "tmpfs"
    mount.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=100m", "tmpfs", str(mount)], capture_output=True, text=True,
                          check=False)
    if done.returncode:
        return ExternalResult(name, note=f"not run: cannot mount a tmpfs ({done.stderr.strip()[:80]})")
    try:
        cfg = apply_overrides(_config(base, name, workdir), [f"run.storage_path={mount}", "data.cache=frames",
                                                                    "data.cache_samplings=4", "checkpoint.keep=2"])
        result, before = ExternalResult(name, injected=True), _tmp_set()
        run = Train(cfg, workdir, "only")
        rc = run.finish()
        out = run.output()
        _final(result, run.run, None, None)
        result.as_designed = rc == 0 and result.final_step == cfg.train.max_steps
        full = len(re.findall(r"\[raytrain\][^\n]*cache[^\n]*(full|budget|stops|stopped|floor)[^\n]*", out))
        result.note = f"{full} cache-full message(s); " + (_last_line(out) if rc else "finished")
        result.leaks = _temp_leaks(run.run, before)
        return result
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, check=False)


EXTERNAL: dict[str, Callable[[Config, Path, str], ExternalResult]] = {
    "driver SIGKILL (step 3), rerun": driver_sigkill,
    "Train worker SIGKILL (step 3), no retries, rerun": train_worker_sigkill_no_retries,
    "decode actor SIGKILL (step 1)": decode_actor_sigkill,
    "newest checkpoint truncated, rerun": damaged_newest_checkpoint("truncated"),
    "newest checkpoint half-written, rerun": damaged_newest_checkpoint("half-written"),
    "video corrupted mid-run, skip": video_corrupted_mid_run,
    "disk fills (100 MB tmpfs, cache on)": disk_fills,
}


def _config(base: Config, name: str, workdir: Path) -> Config:
    """The drills' tiny plan (``drills.drill_config`` with no fault of its own), named after ``name``."""
    slug = "".join(c if c.isalnum() else "-" for c in name).strip("-")
    # the local Ray of `raytrain train` gets the 4 logical CPUs the in-process drills' Ray has (2 workers
    # x 1 + 2 decode actors x 0.5; on a 2-core machine Ray would see 2)
    return apply_overrides(drill_config(base, "none (baseline)", workdir),
                           [f"run.name={slug}", "ray.num_cpus=4", "ray.object_store_mb=200"])


def run_external(base: Config, name: str, workdir: Path) -> ExternalResult:
    return EXTERNAL[name](base, Path(workdir), name)


def _tmp_set() -> set[str]:
    return {str(p) for p in Path("/tmp").glob("raytrain-ckpt-*")}


def _wait_gone(procs: list, limit_s: float) -> tuple[float | None, list]:
    """Seconds until none of ``procs`` listens any more (None: still after ``limit_s``), and the
    listeners seen 1 s after the kill."""
    t0 = time.monotonic()
    time.sleep(1)
    first = _listeners(procs)
    while time.monotonic() - t0 < limit_s:
        if not _listeners(procs):
            return time.monotonic() - t0, first
        time.sleep(1)
    return None, first


def _kill_quietly(proc) -> None:
    import contextlib

    import psutil

    with contextlib.suppress(psutil.Error):  # already gone
        proc.kill()


def _cmdline_has(proc, *words: str) -> bool:
    try:
        text = " ".join(proc.cmdline())
    except Exception:  # noqa: BLE001 -- gone meanwhile
        return False
    return any(w in text for w in words)


def _is_decode_actor(proc) -> bool:
    return _cmdline_has(proc, "MapWorker", "DecodeClips")


def _copied_manifest(rows: list, out: Path) -> Path:
    import shutil

    from raytrain.data.manifest import write_manifest

    records = []
    for r in rows:
        target = out / Path(r.path).name
        if not target.exists():
            shutil.copy(r.path, target)
        records.append({"video_id": r.video_id, "path": str(target), "captions": list(r.captions), "split": r.split,
                        "start_s": r.start_s, "end_s": r.end_s})
    return write_manifest(records, out / "manifest.parquet")


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1][:110] if lines else ""
