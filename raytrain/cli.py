"""``raytrain synth|prepare|train|eval|cache|sweep|demo|index|search|embed-text|serve``: thin commands over the modules (Ray starts only where needed)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

from raytrain.config import ConfigError, load_config
from raytrain.data.annotations import DATASETS  # plain-Python readers: cheap at start-up
from raytrain.data.manifest import ManifestError
from raytrain.search.commands import add_search_parsers


def _cmd_synth(args) -> None:
    if args.pretrain_corpus:
        from raytrain.data.synth_pretrain import generate_synth_pretrain

        t0 = time.time()
        manifest = generate_synth_pretrain(args.out, args.num_videos, args.seed, args.synthvtt_seed,
                                           args.test_fraction, args.frames)
        print(f"SynthVTT pretraining corpus: {args.num_videos} still clips of {args.frames} frames, no (shape, "
              f"colour) pair of SynthVTT(seed {args.synthvtt_seed})'s test split, {time.time() - t0:.1f} s -> {manifest}")
        return
    from raytrain.data.synth import main_synth

    main_synth(args.out, args.num_videos, args.seed, args.test_fraction, args.extra_test)


def _cmd_train(args) -> None:
    from raytrain.ray_env import ensure_ray
    from raytrain.report import metrics_table
    from raytrain.train.trainer import fit, validate_inputs

    cfg = load_config(args.config, args.overrides)
    inputs = validate_inputs(cfg)  # bad data or config fails here, before Ray starts (and only here)
    args.run_cfg = inputs.cfg  # for a failure's message: the run folder, the manifest
    ensure_ray(cfg, quiet=False)
    result = fit(cfg, inputs)
    if any(k.startswith("t2v_") for k in result.metrics):
        print(metrics_table({cfg.run.name: result.metrics}))
    print(result.summary(cfg.data.on_bad_video))


def evaluate_checkpoint(checkpoint: str | None, overrides: list[str], out: str | None,
                        config: str | None = None) -> dict:
    """Evaluate a raytrain checkpoint (folder or run folder) on its config's eval split, or, with no
    checkpoint, the model that ``config`` + ``overrides`` build untrained: zero-shot from
    ``model.pretrained`` (an open_clip/OpenAI file, or a raytrain checkpoint's towers)."""
    from raytrain.data.manifest import load_manifest
    from raytrain.methods import build_objective, load_trained_objective, retrieval_model
    from raytrain.ray_env import ensure_ray

    if checkpoint:
        ckpt, cfg, objective, state = load_trained_objective(checkpoint, overrides)
        step, default_dir, source = int(state["step"]), ckpt, str(ckpt)
    else:  # zero-shot: no training, the towers as model.pretrained has them
        cfg = load_config(config, overrides)
        objective = build_objective(cfg)
        step, default_dir = 0, Path(cfg.run.storage_path) / cfg.run.name / "zero_shot"
        source = f"zero-shot, model.pretrained={cfg.model.pretrained}"
    model = retrieval_model(objective)  # the dual encoder, or the method's own similarity (DMAE)
    rows = load_manifest(cfg.data.manifest, split=cfg.data.eval_split)
    ensure_ray(cfg)
    metrics = evaluate_on_driver(cfg, model, rows)
    metrics["step"] = step
    out_path = Path(out) if out else default_dir / metrics_file_name(cfg)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(metrics, indent=2, sort_keys=True))
    return {"metrics": metrics, "path": str(out_path), "checkpoint": source, "protocol": cfg.eval.v2t_protocol,
            "rerank": cfg.eval.rerank}


def metrics_file_name(cfg) -> str:
    """``metrics.json`` for the default protocol, else a name per protocol and re-ranking, so that
    evaluating a checkpoint with ``eval.rerank=dsl`` does not overwrite its plain metrics."""
    if cfg.eval.v2t_protocol == "raytrain" and cfg.eval.rerank == "none":
        return "metrics.json"
    return f"metrics-v2t_{cfg.eval.v2t_protocol}-rerank_{cfg.eval.rerank}.json"


def evaluate_on_driver(cfg, model, rows) -> dict:
    """Decode the eval clips with Ray Data and embed them with ``model`` in this process (the
    evaluation of a training run's rank 0: same batches, same precision rule)."""
    import torch

    from raytrain.data.pipeline import eval_dataset, eval_texts
    from raytrain.eval.run import evaluate
    from raytrain.model.clip_video import model_image_size

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    texts, owner = eval_texts(rows)
    image_size = model_image_size(cfg.model.arch)
    return evaluate(cfg, model.to(device), eval_dataset(cfg, rows, image_size), texts, owner, len(rows), device,
                    video_names=[r.path for r in rows], bank=_query_bank(cfg, image_size))


def _query_bank(cfg, image_size: int):
    """``eval.rerank=qb_norm``: the query banks (train captions, train clips decoded by Ray Data)."""
    if cfg.eval.rerank != "qb_norm":
        return None
    from raytrain.data.manifest import load_manifest
    from raytrain.data.pipeline import bank_dataset
    from raytrain.eval.run import QueryBank, bank_rows

    texts, clips = bank_rows(cfg.eval, load_manifest(cfg.data.manifest, split=cfg.data.train_split))
    print(f"[raytrain] eval: QB-Norm query banks of {len(texts)} train captions and {len(clips)} train clips "
          f"(split '{cfg.data.train_split}')", flush=True)
    return QueryBank(texts, bank_dataset(cfg, clips, image_size), len(clips))


def _cmd_eval(args) -> None:
    from raytrain.report import metrics_table

    if args.checkpoint and args.config:
        raise ConfigError("eval --checkpoint uses the checkpoint's own config; pass changes as overrides, not --config")
    res = evaluate_checkpoint(args.checkpoint, args.overrides, args.out, args.config)
    print(f"checkpoint: {res['checkpoint']} (step {res['metrics']['step']}); eval.v2t_protocol={res['protocol']}, "
          f"eval.rerank={res['rerank']}")
    print(metrics_table({"checkpoint": res["metrics"]}))
    print(f"wrote {res['path']}")


def _cmd_sweep(args) -> None:
    from raytrain.ray_env import ensure_ray
    from raytrain.tune.space import load_space
    from raytrain.tune.sweep import resume_sweep, start_sweep

    if args.resume:
        if args.config or args.space or args.overrides:
            raise ConfigError("sweep --resume DIR takes no --config, --space or overrides: the sweep "
                              "continues with the config and space saved in DIR")
        from raytrain.config import Config

        ensure_ray(Config(), quiet=False)
        result = resume_sweep(args.resume)
    else:
        if not args.space:
            raise ConfigError("sweep needs --space search_spaces/<name>.yaml (or --resume DIR)")
        cfg = load_config(args.config, args.overrides)
        space = load_space(args.space, cfg)
        ensure_ray(cfg, quiet=False)
        result = start_sweep(cfg, space)
    print(f"\nsweep folder: {result.sweep_dir} (TensorBoard: tensorboard --logdir {result.sweep_dir})")
    print(result.table)
    if result.best_config_path:
        print(f"best config: {result.best_config_path} (raytrain train --config {result.best_config_path})")


def _cmd_cache(args) -> None:
    """Fill the frame cache of the train and eval splits ahead of training (e.g. on CPU nodes, with
    ``data.decode_resource``), so that even a run's first epoch reads frames instead of decoding."""
    from raytrain.data.frame_cache import FrameCache, num_samplings
    from raytrain.data.pipeline import fill_dataset
    from raytrain.methods import data_columns
    from raytrain.ray_env import ensure_ray
    from raytrain.train.trainer import validate_inputs

    cfg = load_config(args.config, args.overrides)
    if cfg.data.cache != "frames":
        raise ConfigError("raytrain cache fills the frame cache: set data.cache=frames (in the config or as "
                          "an override), as the training run that will read it does")
    inputs = validate_inputs(cfg)  # the manifest (every file) and the model name, before Ray starts
    cfg = inputs.cfg
    ensure_ray(cfg)
    for train, rows in ((True, inputs.train_rows), (False, inputs.eval_rows)):
        if not rows:
            continue
        dataset, location = fill_dataset(cfg, rows, inputs.image_size, train, data_columns(cfg))
        cache = FrameCache(location)
        cache.refresh()
        before, t0 = len(cache), time.time()
        for _ in dataset.iter_batches(batch_size=cfg.data.decode_batch_size):
            pass
        cache.refresh()
        split = cfg.data.train_split if train else cfg.data.eval_split
        print(f"{split}: {len(rows)} clips x {num_samplings(cfg, train)} sampling(s): {before} cached before, {len(cache)} now "
              f"({time.time() - t0:.1f} s) in {location}", flush=True)


def _cmd_prepare(args) -> None:
    from raytrain.data.annotations import prepare

    path = prepare(args.dataset, args.annotations, args.videos, args.out, split_protocol=args.split_protocol,
                   allow_missing=args.allow_missing, test_fraction=args.test_fraction)
    if args.probe:  # the manifest is written either way: a failed probe lists the rows to fix
        from raytrain.data.probe import probe_manifest

        t0 = time.time()
        print(f"probe: {probe_manifest(path)} videos open and decode ({time.time() - t0:.1f} s)", flush=True)


def _cmd_demo(args) -> None:
    from raytrain.data.manifest import load_manifest
    from raytrain.eval.metrics import chance_metrics
    from raytrain.model.clip_video import build_model
    from raytrain.ray_env import ensure_ray
    from raytrain.report import metrics_table
    from raytrain.train.state import seed_everything
    from raytrain.train.trainer import fit

    t0 = time.time()
    cfg = load_config(args.config, args.overrides)
    args.run_cfg = cfg
    manifest = Path(cfg.data.manifest)
    if not manifest.is_file():
        if cfg.data.synth_num_videos <= 0:
            raise ManifestError(f"manifest '{manifest}' not found (set data.synth_num_videos to generate SynthVTT)")
        from raytrain.data.synth import main_synth

        print(f"[demo] generating SynthVTT ({cfg.data.synth_num_videos} clips) in {manifest.parent}", flush=True)
        main_synth(str(manifest.parent), cfg.data.synth_num_videos, cfg.data.synth_seed, 0.2)
    rows = load_manifest(manifest, split=cfg.data.eval_split)
    ensure_ray(cfg, quiet=False)  # rank 0's progress lines reach this console
    print(f"[demo] evaluating the untrained model on {len(rows)} test clips", flush=True)
    seed_everything(cfg.train.seed)  # the same initial weights the training starts from
    untrained = evaluate_on_driver(cfg, build_model(cfg.model), rows)
    print(f"[demo] training {cfg.model.arch} ({cfg.model.temporal}) with {cfg.scaling.num_workers} Ray Train "
          f"workers for {cfg.train.epochs} epochs", flush=True)
    result = fit(cfg)
    trained = result.metrics
    num_texts = sum(len(r.captions) for r in rows)
    chance = {f"t2v_{k}": v for k, v in chance_metrics(len(rows)).items()}
    chance.update({f"v2t_{k}": v for k, v in _v2t_chance(rows).items()})
    print()
    print(f"SynthVTT test split: {len(rows)} clips, {num_texts} captions (unseen attribute combinations)")
    print(metrics_table({"chance": chance, "untrained": untrained, "trained": trained}))
    print("\n" + result.summary(cfg.data.on_bad_video))
    print(f"demo took {time.time() - t0:.0f} s")


def _cmd_config(args) -> None:
    from raytrain.config.reference import reference_text, resolved_yaml

    if args.config is None and not args.overrides:
        print(reference_text())
    else:
        print(resolved_yaml(load_config(args.config, args.overrides)), end="")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("raytrain")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _v2t_chance(rows) -> dict:
    """Expected video→text metrics of a random ranking: each video has c of the n captions."""
    import numpy as np

    from raytrain.eval.metrics import video_to_text_metrics

    owner = np.concatenate([[i] * len(r.captions) for i, r in enumerate(rows)])
    return video_to_text_metrics(np.zeros((len(owner), len(rows))), owner)


CONFIG_HINT = ("Config keys: `raytrain config` lists every key with its default, type, allowed values and "
               "meaning; `raytrain config --config FILE [key=value ...]` prints the resolved config.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="raytrain", description=__doc__, epilog=CONFIG_HINT)
    parser.add_argument("--version", action="version", version=f"raytrain {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="generate the SynthVTT benchmark (real H.264 clips + manifest)")
    p.add_argument("--out", required=True, help="folder for the videos and manifest.parquet")
    p.add_argument("--num-videos", type=int, default=200, help="clips to generate (default 200)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the scenes and captions (default 0)")
    p.add_argument("--test-fraction", type=float, default=0.2,
                   help="share of clips in the test split, from held-out (shape, colour) pairs (default 0.2)")
    p.add_argument("--extra-test", type=int, default=0,
                   help="add this many test clips (held-out pairs) after the --num-videos ones; the train split "
                        "stays byte for byte the same (e.g. --num-videos 400 --extra-test 240: 320 test clips)")
    p.add_argument("--pretrain-corpus", action="store_true",
                   help="write the image-like pretraining corpus instead (still scenes, appearance-only captions, "
                        "no pair of SynthVTT(--synthvtt-seed, --test-fraction)'s test split; docs/pretraining.md)")
    p.add_argument("--synthvtt-seed", type=int, default=0, help="--pretrain-corpus: the benchmark seed to stay disjoint from")
    p.add_argument("--frames", type=int, default=4, help="--pretrain-corpus: frames per still clip")
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("config", help="list every config key (default, type, allowed values, meaning), or "
                                      "print the resolved config of a YAML plus overrides",
                       description="Without arguments: every config key with its default, type, allowed values "
                                   "and meaning. With --config and/or overrides: the resolved config as YAML.")
    p.add_argument("--config", default=None, help="YAML config to resolve (configs/*.yaml)")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. train.epochs=2")
    p.set_defaults(func=_cmd_config)

    p = sub.add_parser(
        "prepare", help="write a manifest from a benchmark's annotation files, or your own csv/jsonl, and videos",
        description="Write the Parquet manifest. Benchmarks: --annotations is the folder of its annotation files "
                    "(docs/benchmarks.md). Your own data (--dataset csv|jsonl): --annotations is one file with the "
                    "fields video (a path relative to --videos), caption (one per row; rows of one clip add "
                    "captions) or, in JSONL, captions (a list), and the optional id, split, start, end (seconds). "
                    "A clip without a split goes to 'test' when the first 8 bytes of sha256(clip id), as a fraction "
                    "of 2**64, are below --test-fraction, else to 'train' (docs/benchmarks.md, 'Your own data').")
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--annotations", required=True,
                   help="benchmarks: the folder with its annotation files; csv/jsonl: the annotation file")
    p.add_argument("--videos", required=True, help="folder with the video files (benchmarks: searched recursively)")
    p.add_argument("--out", required=True, help="manifest path, e.g. data/msrvtt/manifest.parquet")
    p.add_argument("--split-protocol", default=None,
                   help="msrvtt: 9k (default), 7k or full; the others have one protocol (docs/benchmarks.md)")
    p.add_argument("--test-fraction", type=float, default=None,
                   help="csv/jsonl: the share of clips without a split that go to 'test', by the hash of the "
                        "clip id (default 0.2; 0 = all train)")
    p.add_argument("--allow-missing", action="store_true",
                   help="drop clips whose video file is missing (the count goes into the manifest metadata)")
    p.add_argument("--probe", action="store_true",
                   help="then open every video and decode its first frame, in parallel, and list the rows whose "
                        "file fails (training can do the same: data.probe_videos=true)")
    p.set_defaults(func=_cmd_prepare)

    for name, func, text in (("train", _cmd_train, "train with Ray Train (resumes the run if it exists)"),
                             ("demo", _cmd_demo, "generate SynthVTT, train, evaluate, compare")):
        p = sub.add_parser(name, help=text, epilog=CONFIG_HINT)
        p.add_argument("--config", default=None, help="YAML config (configs/*.yaml)")
        p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. train.epochs=2")
        p.set_defaults(func=func)

    p = sub.add_parser("sweep", help="Ray Tune sweep over a search space, one Ray Train run per trial",
                       epilog=CONFIG_HINT)
    p.add_argument("--config", default=None, help="base YAML config (its sweep: section sets the search)")
    p.add_argument("--space", default=None, help="search space YAML (search_spaces/*.yaml)")
    p.add_argument("--resume", default=None, metavar="DIR", help="continue the interrupted sweep in DIR")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides of the base config")
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser("cache", help="fill the frame cache (data.cache=frames) of the train and eval splits",
                       epilog=CONFIG_HINT)
    p.add_argument("--config", default=None, help="the training run's YAML config")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. data.cache=frames")
    p.set_defaults(func=_cmd_cache)

    p = sub.add_parser("eval", help="evaluate a checkpoint (folder or run folder) on the eval split, or zero-shot: "
                                    "no --checkpoint, the model.pretrained weights untrained", epilog=CONFIG_HINT)
    p.add_argument("--checkpoint", default=None, help="raytrain checkpoint or run folder (none: zero-shot)")
    p.add_argument("--config", default=None, help="zero-shot only: YAML config (model, data, eval)")
    p.add_argument("--out", default=None, help="metrics.json path (default: inside the checkpoint)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. data.manifest=other.parquet")
    p.set_defaults(func=_cmd_eval)

    add_search_parsers(sub)
    for p in sub.choices.values():
        p.add_argument("--verbose", action="store_true",
                       help="show Ray's and the libraries' own logs on the console, and full tracebacks")
    return parser


def main(argv: list[str] | None = None) -> int:
    from raytrain.ray_env import set_default_env

    set_default_env()
    args = build_parser().parse_args(argv)
    if getattr(args, "verbose", False):
        os.environ["RAYTRAIN_VERBOSE"] = "1"  # raytrain/console.py: Ray's and the workers' logs on the console
    try:
        args.func(args)
    except (ConfigError, ManifestError, FileNotFoundError, ValueError) as exc:
        print(f"raytrain {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nraytrain {args.command}: interrupted (rerun the same command to resume)", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 -- every failure of a command ends in one message
        if type(exc).__name__ == "RunInterrupted":
            print(f"\n{exc}", file=sys.stderr)
            return 130
        # Ray wraps the worker's error (TrainingFailedError, WorkerGroupError, ...): one message with its
        # useful line, the clip's manifest row, the run folder and its last good checkpoint (a rerun
        # resumes there); the whole traceback only with --verbose.
        if args.verbose:
            traceback.print_exception(exc)
        print(_failure_message(args, exc), file=sys.stderr)
        return 1
    return 0


def _failure_message(args, exc: BaseException) -> str:
    from raytrain.failure import decoded_file, error_text, failure_message, manifest_row, short_error

    short = short_error(error_text(exc))
    cfg = getattr(args, "run_cfg", None)
    row = folder = checkpoint = None
    if cfg is not None:
        bad = decoded_file(short)
        try:
            if bad is not None:
                from raytrain.data.manifest import load_manifest

                rows = load_manifest(cfg.data.manifest)
                row = manifest_row([r.path for r in rows], [r.video_id for r in rows], bad)
            if "://" not in cfg.run.storage_path:
                from raytrain.train.state import find_checkpoint, load_training_state

                folder = str(Path(cfg.run.storage_path).resolve() / cfg.run.name)
                if Path(folder).is_dir():
                    ckpt = find_checkpoint(folder)
                    checkpoint = f"step {load_training_state(ckpt)['step']} at {ckpt}"
        except (OSError, ValueError, KeyError, ManifestError):  # no checkpoint yet, or no manifest
            pass
    return failure_message(args.command, short, row, folder, checkpoint, verbose_hint=not args.verbose)


if __name__ == "__main__":
    sys.exit(main())
