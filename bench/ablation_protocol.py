"""The pretrain → zero-shot → fine-tune protocol of ``bench/ablation.py --suite pretrained`` (issue 21
item 5): which runs, with which overrides, from which pretrained backbone, and the report section.

Per seed: the baseline (CLIP4Clip) and MILES each pretrain once on the SynthVTT pretraining corpus
(run keys ``pre-baseline`` / ``pre-miles``, shared by every fine-tune of that seed) — or, with
``--backbone-seed S``, once in all with seed S, and every seed's fine-tunes start from those backbones
(the papers' setting: one released CLIP, fine-tuned with several seeds); each backbone is
evaluated zero-shot on the benchmark (``raytrain eval`` without ``--checkpoint``: no training, meanP
pooling since the temporal module is not carried); then every fine-tune row trains on the benchmark
with the same config (same steps, batch, schedule) from the baseline-pretrained backbone, except the
MILES row, which fine-tunes the MILES-pretrained one with the plain contrastive loss (MILES is a
pretraining method; its paper fine-tunes contrastively). A from-scratch baseline on the same split is
kept as a reference row. ``plan`` is pure, so the planning is tested without running anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# backbone -> (run key, pretraining overrides)
PRETRAIN = {"baseline": ("pre-baseline", ("method.name=clip4clip",)),
            "miles": ("pre-miles", ("method.name=miles",))}
ZERO_SHOT = {"baseline-pretrained, zero-shot": "baseline", "MILES-pretrained, zero-shot": "miles"}
_MASCOT = ("method.name=mascot", "mask.strategy=attention")
# fine-tune row -> (run key, overrides, backbone it starts from; None = from scratch). The first row is
# the baseline the paired Δ is taken against.
FINETUNE = {
    "baseline (CLIP4Clip)": ("pt-0-baseline", ("method.name=clip4clip",), "baseline"),
    "MILES-pretrained (CLIP4Clip fine-tune)": ("pt-miles", ("method.name=clip4clip",), "miles"),
    "+ random masking": ("pt-1-random", ("method.name=mascot", "mask.strategy=random", "method.mascot.isc=false",
                                         "method.mascot.co_learning=false"), "baseline"),
    "+ attention masking": ("pt-2-attention", (*_MASCOT, "method.mascot.isc=false",
                                               "method.mascot.co_learning=false"), "baseline"),
    "+ ISC": ("pt-3-isc", (*_MASCOT, "method.mascot.co_learning=false"), "baseline"),
    "+ co-learning (MASCOT)": ("pt-4-co-learning", _MASCOT, "baseline"),
    "DMAE + NegNCE + TPM-CL": ("pt-dmae-tpmcl", ("method.name=dmae",), "baseline"),
    "MASCOT + NegNCE": ("pt-mascot-negnce", (*_MASCOT, "method.contrastive=negnce"), "baseline"),
    "baseline from scratch (reference)": ("scratch-0-baseline", ("method.name=clip4clip",), None),
}
MARK_START, MARK_END = "<!-- pretrained-protocol: start (bench/ablation.py --suite pretrained) -->", \
    "<!-- pretrained-protocol: end -->"


@dataclass(frozen=True)
class Job:
    kind: str               # "pretrain", "attention", "zero_shot" or "finetune"
    row: str                # the table row (pretrain jobs: the backbone)
    seed: int
    run: str                # run.name ("" for attention jobs: no run)
    overrides: tuple[str, ...]
    pretrained: str | None  # the model.pretrained this job starts from (a pretraining run folder)


def plan(prefix: str, storage_path: str, seeds: list[int], corpus: str, benchmark: str,
         rows: list[str] | None = None, pretrain_overrides: tuple[str, ...] = (),
         backbone_seed: int | None = None) -> list[Job]:
    """The jobs of the protocol, seed by seed in the order they must run (a backbone's pretraining before
    its zero-shot and fine-tune jobs). ``rows``: a subset of ``FINETUNE`` (default all); only the
    backbones those rows need are pretrained and evaluated zero-shot. ``corpus``/``benchmark``: the
    pretraining and benchmark manifests. ``backbone_seed``: pretrain (and measure attention and
    zero-shot) with that seed only, first, and fine-tune every seed from it; None: one per seed."""
    rows = list(FINETUNE) if rows is None else rows
    unknown = [r for r in rows if r not in FINETUNE]
    if unknown:
        raise ValueError(f"unknown fine-tune rows {unknown}; known: {list(FINETUNE)}")
    needed = [b for b in PRETRAIN if any(FINETUNE[r][2] == b for r in rows)]
    jobs: list[Job] = []
    if backbone_seed is not None:  # the shared backbones' seed runs first
        seeds = [backbone_seed, *(s for s in seeds if s != backbone_seed)]
    for seed in seeds:
        tail = (f"train.seed={seed}",)
        shared = backbone_seed is not None and seed != backbone_seed  # fine-tunes only, from the shared backbones
        backbone_dir = {b: str(Path(storage_path) / f"{prefix}-{PRETRAIN[b][0]}-seed{backbone_seed}")
                        for b in needed} if shared else {}
        # CLS-attention concentration on the benchmark's test clips, before and after each pretraining
        if not shared:
            jobs.append(Job("attention", "random init", seed, "", (f"data.manifest={benchmark}", *tail), None))
        for b in needed if not shared else ():
            key, overrides = PRETRAIN[b]
            run = f"{prefix}-{key}-seed{seed}"
            backbone_dir[b] = str(Path(storage_path) / run)
            jobs.append(Job("pretrain", b, seed, run, (f"data.manifest={corpus}", *overrides, *pretrain_overrides,
                                                        *tail, f"run.name={run}"), None))
            jobs.append(Job("attention", f"{b}-pretrained", seed, "", (f"data.manifest={benchmark}",
                                                                       f"model.pretrained={backbone_dir[b]}", *tail),
                            backbone_dir[b]))
        for row, b in ZERO_SHOT.items():
            if b in backbone_dir and not shared:
                run = f"{prefix}-zs-{PRETRAIN[b][0]}-seed{seed}"
                jobs.append(Job("zero_shot", row, seed, run, (f"data.manifest={benchmark}", "method.name=clip4clip",
                                                              "model.temporal=meanP",
                                                              f"model.pretrained={backbone_dir[b]}", *tail,
                                                              f"run.name={run}"), backbone_dir[b]))
        for row in rows:
            key, overrides, b = FINETUNE[row]
            run = f"{prefix}-{key}-seed{seed}" + (f"-from-seed{backbone_seed}" if shared and b else "")
            start = (f"model.pretrained={backbone_dir[b]}",) if b else ()
            jobs.append(Job("finetune", row, seed, run, (f"data.manifest={benchmark}", *overrides, *start, *tail,
                                                         f"run.name={run}"), backbone_dir.get(b)))
    return jobs


def report_section(table_lines: list[str], header: list[str]) -> str:
    """The generated part of docs/ablation.md's protocol section, between its markers."""
    return "\n".join([MARK_START, *header, "", *table_lines, MARK_END])


def splice(doc: str, section: str) -> str:
    """``doc`` with the text between the protocol markers replaced by ``section`` (appended under a
    heading at the end when the markers are not there yet; text outside them is kept)."""
    if MARK_START in doc and MARK_END in doc:
        before, rest = doc.split(MARK_START, 1)
        return before + section + rest.split(MARK_END, 1)[1]
    return doc.rstrip("\n") + "\n\n## Pretrained protocol (issue 21)\n\n" + section + "\n"


def add_protocol_arguments(parser) -> None:
    g = parser.add_argument_group("--suite pretrained")
    g.add_argument("--corpus", default="data/synth-pre/manifest.parquet",
                   help="the pretraining corpus manifest (generated there if missing)")
    g.add_argument("--corpus-size", type=int, default=2000, help="items of a generated pretraining corpus")
    g.add_argument("--benchmark", default="data/synthvtt-test320/manifest.parquet",
                   help="the benchmark manifest (generated there if missing: data.synth_num_videos clips + --extra-test)")
    g.add_argument("--extra-test", type=int, default=240, help="extra test clips of a generated benchmark")
    g.add_argument("--pretrain-overrides", nargs="*", default=[], help="key=value overrides of the pretraining runs only")
    g.add_argument("--backbone-seed", type=int, default=None,
                   help="pretrain once, with this seed, and fine-tune every seed from those backbones "
                        "(default: a pretraining per seed)")
    g.add_argument("--attention-clips", type=int, default=80,
                   help="benchmark test clips the CLS-attention concentration is measured on")
    g.add_argument("--plan-only", action="store_true", help="print the jobs and their overrides, run nothing")


def _record(results: dict[str, list[dict]], row: str, seed: int, metrics: dict) -> None:
    runs = [r for r in results.get(row, []) if r["seed"] != seed]
    results[row] = sorted([*runs, {**metrics, "seed": seed}], key=lambda r: r["seed"])


def run_protocol(args) -> None:
    """Generate what is missing, run the planned jobs (finished runs are evaluated again, not retrained;
    a zero-shot job with its metrics file is read back), write the section of docs/ablation.md."""
    import json
    import time

    from raytrain.config import load_config

    base = load_config(args.config, args.overrides)
    names = list(FINETUNE)
    rows = [names[int(i)] for i in args.variants] if args.variants else names
    jobs = plan(base.run.name, base.run.storage_path, args.seeds, args.corpus, args.benchmark, rows,
                tuple(args.pretrain_overrides), args.backbone_seed)
    if args.plan_only:
        for j in jobs:
            print(f"{j.kind:9s} seed {j.seed} {j.row}: {' '.join(j.overrides)}")
        return
    results_path = Path("bench/results/pretrained_runs.json")
    if args.report_only:
        write_protocol_report(args, base, json.loads(results_path.read_text()))
        return
    from raytrain.cli import evaluate_checkpoint
    from raytrain.data.synth import main_synth
    from raytrain.data.synth_pretrain import generate_synth_pretrain
    from raytrain.ray_env import ensure_ray
    from raytrain.train.trainer import fit

    if not Path(args.benchmark).is_file():
        main_synth(str(Path(args.benchmark).parent), base.data.synth_num_videos, base.data.synth_seed, 0.2,
                   args.extra_test)
    if not Path(args.corpus).is_file():
        generate_synth_pretrain(Path(args.corpus).parent, args.corpus_size, 1, base.data.synth_seed, 0.2,
                                base.data.num_frames)
    ensure_ray(base)
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    for job in jobs:
        overrides = [*args.overrides, *job.overrides]
        t0 = time.time()
        if job.kind == "attention":
            metrics = _attention(args, overrides)
        elif job.kind == "zero_shot":
            out = Path(base.run.storage_path) / job.run / "metrics.json"
            metrics = json.loads(out.read_text()) if out.is_file() else \
                evaluate_checkpoint(None, overrides, str(out), args.config)["metrics"]
        else:
            metrics = dict(fit(load_config(args.config, overrides)).metrics)
        metrics["wall_s"] = time.time() - t0
        prefix = {"pretrain": "pretrain: ", "attention": "attention: "}.get(job.kind, "")
        _record(results, prefix + job.row, job.seed, metrics)
        results_path.parent.mkdir(parents=True, exist_ok=True)
        results_path.write_text(json.dumps(results, indent=1))
        shown = f"ratio {metrics['ratio']:.2f}" if job.kind == "attention" else f"R@1 {metrics.get('t2v_R1', float('nan')):.1f}"
        print(f"[protocol] {job.kind} {job.row} seed {job.seed}: {shown}, {metrics['wall_s']:.0f} s", flush=True)
    write_protocol_report(args, base, results)


def _attention(args, overrides: list[str]) -> dict:
    """The CLS-attention concentration of the (random-init or model.pretrained) model on the first
    ``--attention-clips`` benchmark test clips (bench/attention_concentration.py)."""
    from attention_concentration import concentration
    from mask_pictures import eval_frames, load_model

    cfg, model = load_model(None, args.config, overrides)
    return concentration(model, eval_frames(cfg, args.attention_clips))


def _mean_std(values: list[float], digits: int) -> str:
    import statistics

    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {std:.{digits}f}"


def _attention_table(results: dict[str, list[dict]]) -> list[str]:
    rows = [(name.removeprefix("attention: "), runs) for name, runs in results.items() if name.startswith("attention: ")]
    if not rows:
        return []
    lines = ["### CLS attention on the objects (last layer, benchmark test clips)", "",
             "| backbone | attention on object patches % | objects' share of the frame % | ratio | runs |",
             "|---|---|---|---|---|"]
    for name, runs in rows:
        lines.append(f"| {name} | {_mean_std([100 * r['attention_share'] for r in runs], 1)} | "
                     f"{_mean_std([100 * r['area_share'] for r in runs], 1)} | "
                     f"{_mean_std([r['ratio'] for r in runs], 2)} | {len(runs)} |")
    return [*lines, ""]


def write_protocol_report(args, cfg, results: dict[str, list[dict]]) -> None:
    from ablation import metric_tables  # bench/ablation.py

    zero = {r: results[r] for r in ZERO_SHOT if r in results}
    tuned = {r: results[r] for r in FINETUNE if r in results}
    header = [f"Generated by `bench/ablation.py --suite pretrained --config {args.config} --seeds "
              f"{' '.join(map(str, args.seeds))}"
              + (f" --backbone-seed {args.backbone_seed}" if args.backbone_seed is not None else "")
              + (f" {' '.join(args.overrides)}" if args.overrides else "") + "`.",
              "", (f"Pretraining corpus `{args.corpus}`, benchmark `{args.benchmark}`; `{cfg.model.arch}` "
                   f"({cfg.model.temporal}), {cfg.data.num_frames} frames, {cfg.scaling.num_workers} workers x "
                   f"batch {cfg.train.batch_size}, {cfg.train.epochs} epochs for every fine-tune."
                   + (f" One pretraining per backbone (seed {args.backbone_seed}); every seed fine-tunes from it, so "
                      f"the spread is the fine-tunes' and the zero-shot rows are one run each."
                      if args.backbone_seed is not None else " One pretraining per backbone and seed."))]
    lines = [*_attention_table(results), "### Zero-shot (no training on the benchmark)", "", *metric_tables(zero, baseline=""), "",
             "### Fine-tuned (same budget; Δ paired by seed against the baseline-pretrained baseline)", "",
             *metric_tables(tuned, baseline=next(iter(FINETUNE)))]
    out = Path("docs/ablation.md")
    out.write_text(splice(out.read_text() if out.is_file() else "", report_section(lines, header)))
    print("\n".join(lines))
