"""Test-time re-ranking on SynthVTT: every ``eval.rerank`` method on the checkpoints of several seeds.

Each checkpoint is evaluated through the ``raytrain eval`` command (``raytrain.cli.main``, in this
process so Ray starts once) with ``eval.rerank=none|dsl|inverted_softmax|qb_norm`` under each
``eval.v2t_protocol``, and the script prints (and writes to ``--out``) a table of mean ± std over the
seeds of t2v and v2t R@1 / R@5 / R@10 / MdR, the change of R@1 against ``none`` paired by seed, and
every run's metrics. ``--train`` first trains the missing runs with ``raytrain train`` (the demo config
by default, one run per seed), so the whole table is reproduced by:

    .venv/bin/python bench/rerank_table.py --train --runs /tmp/rerank-runs --seeds 0 1 2 \\
        --manifest data/synthvtt/manifest.parquet

(the manifest is generated first if missing: ``raytrain synth --num-videos 400 --seed 0``). Each
single figure is ``raytrain eval --checkpoint RUN --out m.json eval.rerank=METHOD eval.v2t_protocol=P``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

METHODS = ("none", "dsl", "inverted_softmax", "qb_norm")
# One more row: DSL at the temperature the model trained with (1 / its learned logit scale), beside the
# published T = 0.01 (CLIP's scale of 100), which a model trained from scratch need not share.
LEARNED_T = "dsl, T = 1/learned scale"
ROWS = (*METHODS, LEARNED_T)
COLUMNS = [f"{d}_{m}" for d in ("t2v", "v2t") for m in ("R1", "R5", "R10", "MdR")]


def _train(args, run_dir: Path, seed: int) -> None:
    from raytrain.cli import main

    if any(run_dir.glob("checkpoint_*")):
        print(f"[rerank_table] {run_dir} has checkpoints: not retrained", flush=True)
        return
    code = main(["train", "--config", args.config, f"data.manifest={args.manifest}",
                 f"run.storage_path={run_dir.parent}", f"run.name={run_dir.name}", f"train.seed={seed}",
                 *args.overrides])
    if code:
        sys.exit(f"training seed {seed} failed (exit {code})")


def learned_temperature(run_dir: Path) -> float:
    """1 / exp(logit_scale) of the run's latest checkpoint (the temperature its loss trained with)."""
    from raytrain.train.state import find_checkpoint, load_training_state

    model = load_training_state(find_checkpoint(run_dir))["model"]
    return float(1.0 / next(v for k, v in model.items() if k.endswith("logit_scale")).exp())


def _evaluate(run_dir: Path, protocol: str, row: str, extra: list[str]) -> dict:
    from raytrain.cli import main

    method = "dsl" if row == LEARNED_T else row
    if row == LEARNED_T:
        extra = [*extra, f"eval.dsl_temperature={learned_temperature(run_dir):.6g}"]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "metrics.json"
        code = main(["eval", "--checkpoint", str(run_dir), "--out", str(out), f"eval.v2t_protocol={protocol}",
                     f"eval.rerank={method}", *extra])
        if code:
            sys.exit(f"raytrain eval of {run_dir} with eval.rerank={method} failed (exit {code})")
        return json.loads(out.read_text())


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def _delta(values: list[float]) -> str:
    text = f"{statistics.mean(values):+.1f}"
    return text + (f" ± {statistics.stdev(values):.1f}" if len(values) > 1 else "")


def table(results: dict, protocol: str, seeds: list[int]) -> str:
    """Markdown: one row per method, mean ± std over ``seeds``, and the paired change of R@1."""
    head = ("| eval.rerank | t2v R@1 | t2v R@5 | t2v R@10 | t2v MdR | v2t R@1 | v2t R@5 | v2t R@10 | v2t MdR "
            "| Δ t2v R@1 | Δ v2t R@1 |")
    lines = [head, "|" + "---|" * 11]
    base = results[protocol]["none"]
    for method in ROWS:
        runs = results[protocol][method]
        cells = [_mean_std([runs[str(s)][c] for s in seeds]) for c in COLUMNS]
        deltas = ["" if method == "none" else _delta([runs[str(s)][f"{d}_R1"] - base[str(s)][f"{d}_R1"] for s in seeds])
                  for d in ("t2v", "v2t")]
        lines.append(f"| {method} | " + " | ".join(cells + deltas) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", required=True, help="folder holding one run per seed (<prefix><seed>)")
    parser.add_argument("--prefix", default="rerank-seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--protocols", nargs="+", default=["raytrain", "clip4clip"])
    parser.add_argument("--train", action="store_true", help="train the runs that have no checkpoint first")
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--manifest", default="data/synthvtt/manifest.parquet")
    parser.add_argument("--eval", nargs="*", default=[], dest="eval_overrides",
                        help="extra key=value overrides of every raytrain eval (e.g. eval.dsl_temperature=0.05)")
    parser.add_argument("--out", default="bench/results/rerank_synthvtt_cpu.txt")
    parser.add_argument("--save", default=None, help="JSON file of every evaluation so far, rewritten after each one")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the training runs")
    args = parser.parse_args()

    from raytrain.ray_env import set_default_env

    set_default_env()
    if args.train and not Path(args.manifest).is_file():
        from raytrain.data.synth import main_synth

        main_synth(str(Path(args.manifest).parent), 400, 0, 0.2)
    runs = {s: Path(args.runs) / f"{args.prefix}{s}" for s in args.seeds}
    t0 = time.time()
    for seed, run_dir in runs.items():
        if args.train:
            _train(args, run_dir, seed)
    train_s = time.time() - t0
    results: dict = {p: {m: {} for m in ROWS} for p in args.protocols}
    t0 = time.time()
    for seed, run_dir in runs.items():
        for protocol in args.protocols:
            for row in ROWS:
                results[protocol][row][str(seed)] = _evaluate(run_dir, protocol, row, args.eval_overrides)
                if args.save:
                    Path(args.save).write_text(json.dumps(results, indent=1, sort_keys=True))
    eval_s = time.time() - t0

    first = results[args.protocols[0]]["none"][str(args.seeds[0])]
    knobs = " + ".join(args.eval_overrides) if args.eval_overrides else "defaults"
    lines = [(f"# bench/rerank_table.py on SynthVTT, cpu, 2 cores ({os.cpu_count()} visible); "
              f"{len(args.seeds)} seeds {args.seeds}; training {train_s:.0f} s, evaluations {eval_s:.0f} s"),
             f"# command: .venv/bin/python bench/rerank_table.py {' '.join(sys.argv[1:])}",
             (f"# test split: {int(first['num_videos'])} clips, {int(first['num_texts'])} captions, every caption "
              f"a t2v query; each run's last checkpoint (step {int(first['step'])}); eval knobs: {knobs}"),
             "# learned temperature 1/exp(logit_scale) per seed: "
             + ", ".join(f"{s}: {learned_temperature(r):.4f}" for s, r in runs.items())]
    for protocol in args.protocols:
        lines += ["", f"## eval.v2t_protocol={protocol} (mean ± std over seeds; Δ paired by seed against none)", "",
                  table(results, protocol, args.seeds)]
    lines += ["", "## every run (raytrain eval metrics.json)", "", json.dumps(results, indent=1, sort_keys=True)]
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
