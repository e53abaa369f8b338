"""Method comparisons on SynthVTT through Ray Train, same budget for every variant, several seeds.

``--suite ablation`` (default): MASCOT's ablation, baseline → +random masking → +attention masking →
+ISC → +co-learning, written to ``docs/ablation.md``. ``--suite methods``: baseline, MILES,
DMAE+TPM-CL and MASCOT, written to ``docs/methods_synthvtt.md``. ``--suite pretrained``: the
pretrain → zero-shot → fine-tune protocol (issue 21; jobs planned in ``bench/ablation_protocol.py``),
written into its own section of ``docs/ablation.md``. Every variant trains with the same
steps, batch, frames and schedule from one config; tables give mean ± std of the metrics and the
change against the baseline paired by seed. Finished runs are resumed (evaluated again), not
retrained, so the script can be re-run; text after a "## Reading it" heading in the report is kept.

    .venv/bin/python bench/ablation.py --suite ablation --seeds 0 1 2 [--config configs/ablation.yaml] [key=value ...]
    .venv/bin/python bench/ablation.py --suite pretrained --seeds 0 1 2 [--plan-only] [--variants 0 4 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from ablation_protocol import add_protocol_arguments, run_protocol  # bench/ (this folder is sys.path[0])

# variant name -> (run key, config overrides). Run keys are stable so suites share finished runs.
SUITES = {
    "ablation": {
        "baseline (CLIP4Clip)": ("0-baseline", ["method.name=clip4clip"]),
        "+ random masking": ("1-random", ["method.name=mascot", "mask.strategy=random", "method.mascot.isc=false",
                                          "method.mascot.co_learning=false"]),
        "+ attention masking": ("2-attention", ["method.name=mascot", "mask.strategy=attention",
                                                "method.mascot.isc=false", "method.mascot.co_learning=false"]),
        "+ ISC": ("3-isc", ["method.name=mascot", "mask.strategy=attention", "method.mascot.co_learning=false"]),
        "+ co-learning (MASCOT)": ("4-co-learning", ["method.name=mascot", "mask.strategy=attention"]),
    },
    "methods": {
        "baseline (CLIP4Clip)": ("0-baseline", ["method.name=clip4clip"]),
        "MILES": ("miles", ["method.name=miles"]),
        "DMAE + NegNCE + TPM-CL": ("dmae-tpmcl", ["method.name=dmae"]),
        "MASCOT": ("4-co-learning", ["method.name=mascot", "mask.strategy=attention"]),
    },
}
OUTPUTS = {"ablation": ("docs/ablation.md", "bench/results/ablation_runs.json", "MASCOT ablation on SynthVTT"),
           "methods": ("docs/methods_synthvtt.md", "bench/results/methods_runs.json",
                       "Methods compared on SynthVTT")}
KEYS = ["t2v_R1", "t2v_R5", "t2v_R10", "t2v_MnR", "v2t_R1"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", choices=[*sorted(SUITES), "pretrained"], default="ablation")
    parser.add_argument("--config", default="configs/ablation.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="*", default=None,
                        help="subset of the suite's variant indices (--suite pretrained: its fine-tune rows)")
    parser.add_argument("--report-only", action="store_true", help="rewrite the report from the saved results")
    add_protocol_arguments(parser)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    if args.suite == "pretrained":
        run_protocol(args)
        return
    args.out, args.results, args.title = OUTPUTS[args.suite]
    variants = SUITES[args.suite]
    if args.report_only:
        from raytrain.config import load_config

        write_report(args, load_config(args.config, args.overrides), json.loads(Path(args.results).read_text()))
        return

    from raytrain.config import load_config
    from raytrain.data.synth import main_synth
    from raytrain.ray_env import ensure_ray
    from raytrain.train.trainer import fit

    base = load_config(args.config, args.overrides)
    manifest = Path(base.data.manifest)
    if not manifest.is_file():
        main_synth(str(manifest.parent), base.data.synth_num_videos, base.data.synth_seed, 0.2)
    ensure_ray(base)
    names = list(variants)
    chosen = [names[int(i)] for i in args.variants] if args.variants else names
    results: dict[str, list[dict]] = {}
    for name in chosen:
        key, overrides = variants[name]
        for seed in args.seeds:
            run = f"{base.run.name}-{key}-seed{seed}"
            cfg = load_config(args.config, [*args.overrides, *overrides, f"train.seed={seed}", f"run.name={run}"])
            t0 = time.time()
            metrics = fit(cfg).metrics
            metrics["wall_s"] = time.time() - t0
            metrics["seed"] = seed
            results.setdefault(name, []).append(metrics)
            Path(args.results).parent.mkdir(parents=True, exist_ok=True)
            Path(args.results).write_text(json.dumps(results, indent=1))
            print(f"[ablation] {name} seed {seed}: " + ", ".join(f"{k}={metrics[k]:.1f}" for k in KEYS), flush=True)
    write_report(args, base, results)


def _fmt(values: list[float], signed: bool = False) -> str:
    mean = statistics.mean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:+.1f} ± {std:.1f}" if signed else f"{mean:.1f} ± {std:.1f}"


def metric_tables(results: dict[str, list[dict]], baseline: str | None = None,
                  delta_rows: list[str] | None = None) -> list[str]:
    """Markdown: mean ± std of every row, then each row's change against ``baseline`` (default the first
    row) paired by seed (for ``delta_rows``, default every row after the baseline)."""
    lines = ["| variant | t2v R@1 | t2v R@5 | t2v R@10 | t2v MnR | v2t R@1 | runs |", "|---|---|---|---|---|---|---|"]
    for name, runs in results.items():
        cells = [_fmt([r[k] for r in runs]) for k in KEYS]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {len(runs)} |")
    baseline = baseline if baseline is not None else next(iter(results), None)
    by_seed = {r["seed"]: r for r in results.get(baseline, [])}
    if by_seed:
        lines += ["", ("Paired by seed (same initial weights, data order and captions as the baseline run of that "
                  "seed): change against the baseline, mean ± std over seeds."), "",
                  "| variant | Δ t2v R@1 | Δ t2v R@5 | Δ t2v R@10 | Δ t2v MnR | Δ v2t R@1 |", "|---|---|---|---|---|---|"]
        for name in delta_rows if delta_rows is not None else [n for n in results if n != baseline]:
            pairs = [(r, by_seed[r["seed"]]) for r in results.get(name, []) if r["seed"] in by_seed]
            if pairs:
                cells = [_fmt([r[k] - b[k] for r, b in pairs], signed=True) for k in KEYS]
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def write_report(args, cfg, results: dict[str, list[dict]]) -> None:
    lines = [
        f"# {args.title}",
        "",
        f"Generated by `bench/ablation.py --suite {args.suite} --config {args.config} "
        f"--seeds {' '.join(map(str, args.seeds))}"
        + (f" {' '.join(args.overrides)}" if args.overrides else "") + "`.",
        "",
        (f"Setup: `{cfg.model.arch}` ({cfg.model.temporal}) trained from scratch, {cfg.data.num_frames} frames, "
        f"{cfg.scaling.num_workers} Ray Train workers x batch {cfg.train.batch_size}, {cfg.train.epochs} epochs, "
        f"mask ratios high {cfg.mask.high_ratio} / low {cfg.mask.low_ratio}; SynthVTT "
        f"({cfg.data.synth_num_videos} clips, test split of unseen attribute combinations, every caption a query)."),
        "Same steps, batch and schedule for every variant; mean ± std over seeds (train.seed).",
        "",
    ]
    lines += metric_tables(results, baseline=next(iter(SUITES[args.suite])))
    lines += ["", "Per run (JSON):", "", "```json",
              json.dumps({k: [{m: round(r[m], 2) for m in ["seed", *KEYS]} for r in v] for k, v in results.items()},
                         indent=1),
              "```", ""]
    out = Path(args.out)
    kept = ""
    if out.is_file() and "\n## Reading it" in out.read_text():
        kept = "\n## Reading it" + out.read_text().split("\n## Reading it", 1)[1]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + kept)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
