"""Per-term loss curves and gradient norms of finished runs, side by side, from their TensorBoard files.

    .venv/bin/python bench/loss_terms.py runs/ablation/ablation-pt-0-baseline-seed0 \
        runs/ablation/ablation-pt-4-co-learning-seed0 [--points 5] [--out bench/results/loss_terms.txt]

What a researcher reads to see why a method trails its baseline: whether the main contrastive term
(``train/loss_nce``) ends higher (the auxiliary terms took the budget), which auxiliary term is still
large at the end, and whether the gradient norm (``train/grad_norm``, before clipping) differs. For
each run: one row per ``train/loss*`` tag and ``train/grad_norm`` with the values at ``--points``
evenly spaced logged steps (first and last included), then the run's final eval ``t2v_R1``. The
values are the raw terms as logged; the weights (``method.*.lambda_*``) multiply them in the loss.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def scalars(run_dir: Path) -> dict[str, dict[int, float]]:
    """Every scalar tag of the run as TensorBoard shows it (its event files read together)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder = run_dir / "tensorboard"
    if not folder.is_dir():
        raise SystemExit(f"{run_dir}: no tensorboard/ folder (not a raytrain run folder?)")
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}


def spaced(values: dict[int, float], points: int) -> list[tuple[int, float]]:
    """``points`` evenly spaced (step, value) pairs, the first and the last logged step included."""
    steps = sorted(values)
    if len(steps) <= points:
        return [(s, values[s]) for s in steps]
    picks = sorted({round(i * (len(steps) - 1) / (points - 1)) for i in range(points)})
    return [(steps[i], values[steps[i]]) for i in picks]


def table(run_dirs: list[Path], points: int) -> str:
    lines = []
    for run_dir in run_dirs:
        tags = scalars(run_dir)
        terms = sorted(t for t in tags if t.startswith("train/loss")) + ["train/grad_norm"]
        r1 = tags.get("eval/t2v_R1", {})
        final = f"t2v R@1 {r1[max(r1)]:.1f}" if r1 else "no eval"
        lines.append(f"{run_dir.name}  ({final})")
        for term in terms:
            if term not in tags:
                continue
            row = "  ".join(f"{step:>4}:{value:7.3f}" for step, value in spaced(tags[term], points))
            lines.append(f"  {term:<18} {row}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (<run.storage_path>/<run.name>)")
    parser.add_argument("--points", type=int, default=5, help="logged steps shown per term")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.points < 2:
        sys.exit("--points must be at least 2 (the first and the last logged step)")
    text = table(args.runs, args.points)
    print(text)
    if args.out:
        args.out.write_text(f"$ python bench/loss_terms.py {' '.join(str(r) for r in args.runs)}\n\n{text}\n")


if __name__ == "__main__":
    main()
