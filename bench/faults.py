"""Fault drills on a tiny 2-worker CPU fit: each fault injected once, one table.

    .venv/bin/python bench/faults.py [--out bench/results/faults_cpu.txt] [--only NAME ...] [--internal-only]

Generates a 60-clip SynthVTT set and runs every drill of ``tests/drills.py`` (faults the program injects
into itself: a worker's SIGKILL, a crash mid-checkpoint, bad videos, NaN losses) in this process on a
local Ray with 4 logical CPUs, then every drill of ``tests/external_drills.py`` (faults from outside:
SIGKILL of the driver, of a Train worker without retries and of a decode actor, checkpoints damaged
on disk, a video corrupted mid-run, a 100 MB tmpfs that fills) against ``raytrain train`` subprocesses. All on the tiny config of
``tests/tiny.py`` (RT-Micro-ViT, 2 workers x batch 4, 4 steps, checkpoints at steps 2 and 4, per-rank
reproducible batches). Columns: fault, injected, survived (as designed: finished; for the
stop-by-design faults, stopped with the expected message), steps lost (trained again after a restart),
finished checkpoints lost (internal drills; must be 0), final step, whether the final weights equal the
baseline's bit for bit, leaks (temp files left in the run folder or /tmp; listeners are in the note),
wall time, note.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # drills.py and tiny.py live there

for _key, _value in {"RAY_DATA_USE_DATASOURCE_V2": "0", "RAY_TRAIN_METRICS_ENABLED": "0",
                     "RAY_USAGE_STATS_ENABLED": "0", "RAY_DEDUP_LOGS": "0"}.items():
    os.environ.setdefault(_key, _value)

HEADER = ("fault", "injected", "survived", "steps lost", "finished ckpts lost", "final step",
          "weights = baseline", "leaks", "wall s", "note")


def _same(baseline, model, final_step) -> str:
    import torch

    if baseline is None or model is None or final_step != 4:
        return "-"
    return "yes" if all(torch.equal(baseline[k], model[k]) for k in baseline) else "no"


def internal_rows(base, names, work: Path) -> tuple[list[tuple[str, ...]], dict | None]:
    import ray
    from drills import DRILLS, drill_config, run_drill
    from external_drills import _temp_leaks, _tmp_set

    from raytrain.ray_local import api_server_env, temporary_env

    with temporary_env(api_server_env(None)):  # the State API pin raytrain's own local Ray gets (docs/faults.md)
        ray.init(num_cpus=4, object_store_memory=200 * 2**20, include_dashboard=False, log_to_driver=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    rows, baseline = [], None
    for name in names:
        t0, before = time.monotonic(), _tmp_set()
        r = run_drill(base, name, work)
        seconds = time.monotonic() - t0
        cfg = drill_config(base, name, work)
        leaks = _temp_leaks(Path(cfg.run.storage_path) / cfg.run.name, before)
        if name == "none (baseline)":
            baseline = r.model
        same = "-" if name == "none (baseline)" else _same(baseline, r.model, r.final_step)
        found = re.search(DRILLS[name][1], r.error, re.DOTALL) if r.error and DRILLS[name][1] else None
        if found:  # the message the run stopped with: the bad file / the NaN step and last checkpoint
            found = re.search(r"cannot decode [^\n]*|non-finite loss or gradient at step \d[^\n]*", r.error)
        note = (found.group(0)[:110] if found else r.error.splitlines()[0][:90]) if r.error else ", ".join(
            f"{k}={r.metrics[k]}" for k in ("bad_videos_skipped", "nan_steps_skipped") if r.metrics.get(k))
        rows.append((name, "yes" if r.injected else "no", "yes" if r.as_designed else "NO", str(r.steps_lost),
                     str(r.checkpoints_lost), str(r.final_step), same, "; ".join(leaks) or "none", f"{seconds:.0f}",
                     note))
        print(" | ".join(rows[-1]), flush=True)
    ray.shutdown()
    return rows, baseline


def external_rows(base, names, work: Path, baseline) -> list[tuple[str, ...]]:
    from external_drills import run_external

    rows = []
    for name in names:
        t0 = time.monotonic()
        r = run_external(base, name, work)
        not_run = r.note.startswith("not run")
        rows.append((name, "yes" if r.injected else "no", "-" if not_run else ("yes" if r.as_designed else "NO"),
                     str(r.steps_lost), "-", str(r.final_step), _same(baseline, r.model, r.final_step),
                     "; ".join(r.leaks) or "none", f"{time.monotonic() - t0:.0f}", r.note))
        print(" | ".join(rows[-1]), flush=True)
    return rows


def main() -> None:
    from drills import DRILLS
    from external_drills import EXTERNAL
    from tiny import tiny_fit_config

    from raytrain.data.synth import generate_synthvtt

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None)
    parser.add_argument("--only", nargs="*", default=None, help="drill names (the baseline always runs)")
    parser.add_argument("--internal-only", action="store_true")
    args = parser.parse_args()
    picked = [n for n in [*DRILLS, *EXTERNAL] if args.only is None or n in args.only or n == "none (baseline)"]
    work = Path(tempfile.mkdtemp(prefix="raytrain-faults-"))
    generate_synthvtt(work / "synth", num_videos=60, seed=3)
    base = tiny_fit_config(work / "synth", work / "runs")
    rows, baseline = internal_rows(base, [n for n in picked if n in DRILLS], work)
    if not args.internal_only:
        rows += external_rows(base, [n for n in picked if n in EXTERNAL], work, baseline)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(HEADER)]
    lines = [f"# bench/faults.py on {platform.node()} ({os.cpu_count()} CPUs), {time.strftime('%Y-%m-%d %H:%M')}",
             ("# tiny 2-worker CPU fit: RT-Micro-ViT, batch 4 x 2, 4 steps, checkpoints at 2 and 4, "
              "data.per_rank_plan=true; external drills run `raytrain train` subprocesses"), ""]
    lines.append(" | ".join(h.ljust(w) for h, w in zip(HEADER, widths)))
    lines.append("-+-".join("-" * w for w in widths))
    lines += [" | ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    table = "\n".join(lines)
    print("\n" + table)
    if args.out:
        Path(args.out).write_text(table + "\n")


if __name__ == "__main__":
    main()
