"""One config object, from YAML (plus ``key=value`` overrides) to every component.

Sections are frozen dataclasses; loading checks every key and value and names the offending key and
file. ``Config.to_dict`` round-trips through ``Config.from_dict`` so the config can travel to Ray
workers and into checkpoints as plain data.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A config that cannot be used; the message names the key (and the file when there is one)."""


@dataclass(frozen=True)
class RunSection:
    name: str = "run"
    storage_path: str = "runs"  # local folder, shared filesystem path, or pyarrow URI (s3://, gs://)
    # Does every node see storage_path? auto: URIs and network mounts (NFS, ...) yes, other local paths
    # no; a multi-node cluster refuses a path that is not shared (docs/cluster.md).
    shared_storage: Literal["auto", True, False] = "auto"


@dataclass(frozen=True)
class DataSection:
    manifest: str = "data/synthvtt/manifest.parquet"
    train_split: str = "train"
    eval_split: str = "test"
    num_frames: int = 8
    max_words: int = 32  # caption length in tokens (CLIP4Clip: 32)
    decoder: Literal["decord", "pyav"] = "decord"
    decode_actors: int = 1
    decode_cpus: float = 0.5
    decode_batch_size: int = 8  # clips per map_batches call
    # A custom Ray resource each decode actor requests (e.g. "decode", given only to CPU nodes) so the
    # decode actors stay off the GPU nodes; "" = no custom resource.
    decode_resource: str = ""
    decode_resource_per_actor: float = 1.0
    synth_num_videos: int = 0  # > 0: `raytrain demo` generates SynthVTT at data.manifest's folder
    synth_seed: int = 0
    # A clip that cannot be decoded: "error" stops the run naming the file and the decoder's message;
    # "skip" replaces it by a good clip from the train split (counted, reported; see docs/faults.md).
    on_bad_video: Literal["error", "skip"] = "error"
    decode_timeout_s: float = 60.0  # a decode that takes longer is a bad video; 0 = no limit
    # True: every rank streams its own slice of each planned step in plan order (one decode pool per
    # rank), so batches and a resumed run are reproducible; False: Ray Data's dynamic streaming split.
    per_rank_plan: bool = False
    # frames: the first time a clip is needed its sampled, resized uint8 frames are written to Arrow
    # shards (raytrain/data/frame_cache.py); later epochs and evaluations read them instead of decoding.
    cache: Literal["none", "frames"] = "none"
    cache_samplings: int = 4  # temporal samplings cached per train clip; epochs cycle through them
    cache_dir: str = ""  # "" = <run>/frame_cache; a shared path/URI lets runs (sweep trials) share it


@dataclass(frozen=True)
class ModelSection:
    arch: str = "ViT-B-32"  # any open_clip model name, or one of raytrain's tiny configs (RT-*)
    pretrained: str | None = None  # local checkpoint path; None = random init
    temporal: Literal["meanP", "seqTransf"] = "meanP"
    temporal_layers: int = 4
    max_logit_scale: float = 100.0
    # Recompute each transformer block's activations in the backward pass instead of storing them
    # (towers and seqTransf): less memory for long clips / big batches, ~30 % more compute.
    grad_checkpointing: bool = False


@dataclass(frozen=True)
class MaskSection:
    """Patch masks for the masked-view methods (MASCOT's high/low-informed masks)."""
    strategy: Literal["attention", "random"] = "attention"  # random: built by the Ray Data workers
    high_ratio: float = 0.3  # share of each frame's patches in the high-informed mask
    low_ratio: float = 0.3  # share in the low-informed mask


@dataclass(frozen=True)
class MascotSection:
    """MASCOT parts, each switchable, and its loss weights (methods.md §1; our defaults)."""
    masked_views: bool = True  # the two masked passes and their InfoNCE (L_mv)
    isc: bool = True  # informed semantics completion: decoder + reconstruction loss (L_rec)
    co_learning: bool = True  # dual-mask co-learning consistency (L_co)
    attention: Literal["cls", "text_aware"] = "cls"  # patch ranking source
    lambda_mv: float = 0.5
    lambda_rec: float = 1.0
    lambda_co: float = 0.5
    lambda_tp: float = 0.0  # text-patch alignment of the completed patches (0 = off)
    decoder_layers: int = 2
    decoder_heads: int = 8


@dataclass(frozen=True)
class MilesSection:
    """MILES parts (methods.md §2): the training code is not released, so all values are our defaults."""
    mask_ratio: float = 0.5  # share ρ of each frame's patches in the tube mask (shared by all frames)
    block_min: int = 2  # side lengths (patches) of the random rectangles that build the tube mask
    block_max: int = 4
    momentum: float = 0.999  # EMA snapshot encoder: θ_ema ← m θ_ema + (1 − m) θ after each optimizer step
    predictor: Literal["transformer", "linear"] = "transformer"  # linear: the cheaper ablation
    predictor_layers: int = 2
    predictor_heads: int = 12  # rounded down to a divisor of the ViT width
    lambda_mvm: float = 1.0
    contrastive_view: Literal["unmasked", "masked"] = "unmasked"  # Option B (ours) / Option A (paper figure)


@dataclass(frozen=True)
class NegNCESection:
    """NegNCE (methods.md §3.2; official code ``dmae_utils.NegNCE``)."""
    scale: float = 100.0  # fixed, not the learnable CLIP scale
    c_pos: float = 1.0
    c_neg: float = 0.5
    margin: float = 0.0  # δ: a negative is hard if it beats its row's or column's positive minus δ


@dataclass(frozen=True)
class DmaeSection:
    """DMAE token-wise similarity (methods.md §3.1; official code ``_get_wti_similarity``)."""
    interaction: Literal["att_ti", "sentence", "words"] = "att_ti"  # att_ti: ½(sentence + word branch)
    neighbour: bool = True  # W_VA frame-neighbour enhancement (code flag l3_with_nfc)
    neighbour_weight: float = 0.5
    text_block: int = 32  # texts x videos per block of the (texts, videos, words, frames) tensor
    video_block: int = 256


@dataclass(frozen=True)
class TpmclSection:
    """TPM-CL (methods.md §3.3; official code ``get_partial_similarity``), used by method 'dmae'."""
    enabled: bool = True
    threshold: float = 0.6  # τ (l3_cis_thresh): mask the top tokens whose cumulative weight is < τ
    margin: float = 0.6  # μ (l3_margin_loss_thresh)
    # The three partial margins (all on = code partial_type 4; 1+2 = partial_type 2; 3 = partial_type 3):
    margin1: bool = True  # sim(t, F) > sim(t, F^p)
    margin2: bool = True  # sim(t_g, F) > sim(t_g, F^p)
    margin3: bool = True  # sim(t_g, F) > sim(t_g^p, F)
    lambda_tpm: float = 1.0


@dataclass(frozen=True)
class MethodSection:
    name: Literal["clip4clip", "mascot", "miles", "dmae"] = "clip4clip"
    # Loss on the main G×G similarity: auto = negnce for dmae, infonce for the others.
    contrastive: Literal["auto", "infonce", "negnce"] = "auto"
    mascot: MascotSection = field(default_factory=MascotSection)
    miles: MilesSection = field(default_factory=MilesSection)
    negnce: NegNCESection = field(default_factory=NegNCESection)
    dmae: DmaeSection = field(default_factory=DmaeSection)
    tpmcl: TpmclSection = field(default_factory=TpmclSection)


@dataclass(frozen=True)
class OptimSection:
    lr: float = 1e-4  # new modules (temporal transformer, logit scale, method heads)
    tower_lr: float = 1e-7  # the open_clip towers (CLIP4Clip fine-tunes them gently)
    weight_decay: float = 0.2
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-6
    warmup_fraction: float = 0.1
    grad_clip: float = 1.0  # 0 disables clipping


@dataclass(frozen=True)
class TrainSection:
    num_workers: int = 2
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    # Ray placement group strategy of the Train workers (SPREAD: one worker per node where possible).
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"
    torch_threads: int = 1  # CPU threads per worker (avoid oversubscribing small machines)
    batch_size: int = 32  # per worker; the contrastive batch is batch_size * num_workers
    epochs: int = 5
    max_steps: int = 0  # > 0 caps the total number of optimizer steps
    stop_at_step: int = 0  # > 0: checkpoint and stop cleanly after this step (time-boxed jobs, tests)
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast on GPU, fp32 on CPU
    # torch.compile the training objective (after DDP wraps it) with this mode; none = eager.
    compile: Literal["none", "default", "reduce-overhead", "max-autotune"] = "none"
    checkpoint_every: int = 50  # steps
    keep_checkpoints: int = 2
    log_every: int = 10
    seed: int = 0
    eval_at_end: bool = True
    # > 0: also evaluate the eval split at every checkpoint whose step is a multiple of this (a sweep's
    # early stopping on R@1 needs the metric during training); a multiple of train.checkpoint_every.
    eval_every: int = 0
    max_failures: int = 0
    keep_best_by: str = ""  # "" keeps the latest train.keep_checkpoints; else a reported metric, e.g. "loss"
    keep_best_order: Literal["min", "max"] = "min"
    on_nan: Literal["skip", "stop"] = "stop"  # a non-finite loss or gradient: skip the update, or stop
    # Fault injection for tests and bench/faults.py (0 = off). Kill/crash faults fire once per run
    # folder (a marker file), so the restarted worker group goes on.
    fault_kill_at_step: int = 0  # the worker of rank fault_kill_rank exits hard before this step
    fault_kill_rank: int = 1
    fault_checkpoint_crash_at_step: int = 0  # rank 0 dies halfway through writing this step's checkpoint
    fault_nan_at_step: int = 0  # the loss of this step (1-based) is NaN on every rank


@dataclass(frozen=True)
class EvalSection:
    batch_size: int = 32
    text_batch_size: int = 256
    # Queries scored at a time against every candidate (metrics stay exact; memory ~ block x candidates)
    sim_block: int = 1024


@dataclass(frozen=True)
class SweepSection:
    """``raytrain sweep``: Ray Tune over a search space (search_spaces/*.yaml), one Ray Train run per trial."""
    name: str = "sweep"  # the sweep folder: <run.storage_path>/<sweep.name>
    metric: str = "t2v_R1"  # a reported metric: t2v_*/v2t_* (eval) or loss (training)
    mode: Literal["max", "min"] = "max"
    search: Literal["random", "grid"] = "random"  # random: sample ranges/choices; grid: enumerate
    num_samples: int = 1  # random: samples (each crossed with the grid keys); grid: repeats of the grid
    max_concurrent_trials: int = 0  # 0: as many as the cluster's CPUs/GPUs fit (trial = workers + decode)
    scheduler: Literal["none", "asha"] = "none"
    asha_grace_period: int = 0  # optimizer steps before ASHA may stop a trial; 0 = the first evaluation
    asha_reduction_factor: float = 2.0
    seed: int = 0  # the sampler's seed, so a random sweep draws the same trials again


@dataclass(frozen=True)
class RaySection:
    address: str | None = None  # None: connect to a running cluster if any, else start a local one
    num_cpus: int | None = None  # logical CPUs for a local Ray started by raytrain
    object_store_mb: int | None = None


@dataclass(frozen=True)
class Config:
    run: RunSection = field(default_factory=RunSection)
    data: DataSection = field(default_factory=DataSection)
    model: ModelSection = field(default_factory=ModelSection)
    method: MethodSection = field(default_factory=MethodSection)
    mask: MaskSection = field(default_factory=MaskSection)
    optim: OptimSection = field(default_factory=OptimSection)
    train: TrainSection = field(default_factory=TrainSection)
    eval: EvalSection = field(default_factory=EvalSection)
    sweep: SweepSection = field(default_factory=SweepSection)
    ray: RaySection = field(default_factory=RaySection)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> Config:
        return _build(cls, data, prefix="", source=source)

    def replace(self, **overrides: Any) -> Config:
        """Return a copy with dotted-key values set (typed values, no YAML parsing), e.g.
        ``cfg.replace(**{"optim.lr": 1e-3, "run.name": "24e38_00000"})``; checked like a file."""
        data = self.to_dict()
        for key, value in overrides.items():
            _merge_override(data, key.split("."), value)
        return Config.from_dict(data, source="values " + ", ".join(f"{k}={v!r}" for k, v in overrides.items()))


# Checks that run after types are right: (key, predicate, what it must be).
_RULES: list[tuple[str, typing.Callable[[Any], bool], str]] = [
    ("data.num_frames", lambda v: v >= 1, ">= 1"),
    ("data.max_words", lambda v: v >= 4, ">= 4"),
    ("data.decode_actors", lambda v: v >= 1, ">= 1"),
    ("data.decode_cpus", lambda v: v > 0, "> 0"),
    ("data.decode_batch_size", lambda v: v >= 1, ">= 1"),
    ("data.decode_resource_per_actor", lambda v: v > 0, "> 0"),
    ("data.cache_samplings", lambda v: v >= 1, ">= 1"),
    ("run.shared_storage", lambda v: isinstance(v, bool) or v == "auto", "'auto', true or false"),
    ("data.synth_num_videos", lambda v: v >= 0, ">= 0"),
    ("model.temporal_layers", lambda v: v >= 1, ">= 1"),
    ("model.max_logit_scale", lambda v: v > 0, "> 0"),
    ("mask.high_ratio", lambda v: 0 < v < 1, "in (0, 1)"),
    ("mask.low_ratio", lambda v: 0 < v < 1, "in (0, 1)"),
    ("method.mascot.lambda_mv", lambda v: v >= 0, ">= 0"),
    ("method.mascot.lambda_rec", lambda v: v >= 0, ">= 0"),
    ("method.mascot.lambda_co", lambda v: v >= 0, ">= 0"),
    ("method.mascot.lambda_tp", lambda v: v >= 0, ">= 0"),
    ("method.mascot.decoder_layers", lambda v: v >= 1, ">= 1"),
    ("method.mascot.decoder_heads", lambda v: v >= 1, ">= 1"),
    ("method.miles.mask_ratio", lambda v: 0 < v < 1, "in (0, 1)"),
    ("method.miles.block_min", lambda v: v >= 1, ">= 1"),
    ("method.miles.momentum", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("method.miles.predictor_layers", lambda v: v >= 1, ">= 1"),
    ("method.miles.predictor_heads", lambda v: v >= 1, ">= 1"),
    ("method.miles.lambda_mvm", lambda v: v >= 0, ">= 0"),
    ("method.negnce.scale", lambda v: v > 0, "> 0"),
    ("method.negnce.c_pos", lambda v: v >= 0, ">= 0"),
    ("method.negnce.c_neg", lambda v: v >= 0, ">= 0"),
    ("method.dmae.neighbour_weight", lambda v: v >= 0, ">= 0"),
    ("method.dmae.text_block", lambda v: v >= 1, ">= 1"),
    ("method.dmae.video_block", lambda v: v >= 1, ">= 1"),
    ("method.tpmcl.threshold", lambda v: 0 < v <= 1, "in (0, 1]"),
    ("method.tpmcl.margin", lambda v: v >= 0, ">= 0"),
    ("method.tpmcl.lambda_tpm", lambda v: v >= 0, ">= 0"),
    ("optim.lr", lambda v: v > 0, "> 0"),
    ("optim.tower_lr", lambda v: v >= 0, ">= 0"),
    ("optim.weight_decay", lambda v: v >= 0, ">= 0"),
    ("optim.beta1", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("optim.beta2", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("optim.eps", lambda v: v > 0, "> 0"),
    ("optim.warmup_fraction", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("optim.grad_clip", lambda v: v >= 0, ">= 0"),
    ("train.num_workers", lambda v: v >= 1, ">= 1"),
    ("train.cpus_per_worker", lambda v: v > 0, "> 0"),
    ("train.torch_threads", lambda v: v >= 1, ">= 1"),
    ("train.batch_size", lambda v: v >= 2, ">= 2 (a contrastive batch needs negatives)"),
    ("train.epochs", lambda v: v >= 1, ">= 1"),
    ("train.max_steps", lambda v: v >= 0, ">= 0"),
    ("train.stop_at_step", lambda v: v >= 0, ">= 0"),
    ("train.checkpoint_every", lambda v: v >= 1, ">= 1"),
    ("train.keep_checkpoints", lambda v: v >= 1, ">= 1"),
    ("train.log_every", lambda v: v >= 1, ">= 1"),
    ("train.max_failures", lambda v: v >= -1, ">= -1 (-1 retries forever)"),
    ("data.decode_timeout_s", lambda v: v >= 0, ">= 0 (0 = no limit)"),
    ("train.fault_kill_at_step", lambda v: v >= 0, ">= 0 (0 = off)"),
    ("train.fault_kill_rank", lambda v: v >= 0, ">= 0"),
    ("train.fault_checkpoint_crash_at_step", lambda v: v >= 0, ">= 0 (0 = off)"),
    ("train.fault_nan_at_step", lambda v: v >= 0, ">= 0 (0 = off)"),
    ("train.eval_every", lambda v: v >= 0, ">= 0 (0 = only at the end)"),
    ("sweep.num_samples", lambda v: v >= 1, ">= 1"),
    ("sweep.max_concurrent_trials", lambda v: v >= 0, ">= 0 (0 = derived from the cluster)"),
    ("sweep.asha_grace_period", lambda v: v >= 0, ">= 0 (0 = the first evaluation)"),
    ("sweep.asha_reduction_factor", lambda v: v > 1, "> 1"),
    ("eval.batch_size", lambda v: v >= 1, ">= 1"),
    ("eval.text_batch_size", lambda v: v >= 1, ">= 1"),
    ("eval.sim_block", lambda v: v >= 1, ">= 1"),
]


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    origin = typing.get_origin(tp)
    bad = ConfigError(f"config key '{key}' must be {_type_name(tp)} (got {value!r}) in {source}")
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key, source)
            except ConfigError:
                pass
        raise bad
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise bad
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise bad
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad
    raise ConfigError(f"config key '{key}' has an unsupported type {tp} (internal error)")


def _build(cls: type, data: Mapping[str, Any], prefix: str, source: str) -> Any:
    if not isinstance(data, Mapping):
        where = f"section '{prefix.rstrip('.')}'" if prefix else "the top level"
        raise ConfigError(f"config {where} must be a mapping (got {type(data).__name__}) in {source}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            raise ConfigError(f"unknown config key '{prefix}{key}' in {source}; "
                              f"valid keys here: {sorted(names)}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        tp = hints[f.name]
        key = prefix + f.name
        if dataclasses.is_dataclass(tp):
            kwargs[f.name] = _build(tp, data[f.name] or {}, key + ".", source)
        else:
            kwargs[f.name] = _coerce(data[f.name], tp, key, source)
    obj = cls(**kwargs)
    if cls is Config:
        _validate(obj, source)
    return obj


def _get(cfg: Config, dotted: str) -> Any:
    obj: Any = cfg
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _validate(cfg: Config, source: str) -> None:
    for key, ok, what in _RULES:
        value = _get(cfg, key)
        if not ok(value):
            raise ConfigError(f"config key '{key}' must be {what} (got {value!r}) in {source}")
    if cfg.train.fault_kill_at_step and cfg.train.fault_kill_rank >= cfg.train.num_workers:
        raise ConfigError(f"config key 'train.fault_kill_rank' must be < train.num_workers "
                          f"({cfg.train.num_workers}) (got {cfg.train.fault_kill_rank}) in {source}")
    if cfg.train.eval_every % cfg.train.checkpoint_every:
        raise ConfigError(f"config key 'train.eval_every' must be a multiple of train.checkpoint_every "
                          f"({cfg.train.checkpoint_every}) (got {cfg.train.eval_every}) in {source}")
    miles = cfg.method.miles
    if miles.block_max < miles.block_min:
        raise ConfigError(f"config key 'method.miles.block_max' must be >= method.miles.block_min "
                          f"({miles.block_min}) (got {miles.block_max}) in {source}")


def _dump_scalar(v: Any) -> str:
    return yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("\n...").strip()


_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")  # not "24e38_00000" (a name)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr=3e-4"`` → (["train", "lr"], 0.0003); values are parsed as YAML scalars."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key=value (e.g. train.epochs=2)")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not p for p in key.split(".")):
        raise ConfigError(f"override '{text}' has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override '{text}': value is not valid YAML ({exc})") from exc
    # YAML reads 1e-4 as a string (no dot); accept plain numeric spellings as numbers.
    if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
        value = float(value)
    return key.split("."), value


def _merge_override(data: dict[str, Any], parts: Sequence[str], value: Any) -> None:
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = {}
            node[part] = child
        if not isinstance(child, dict):
            raise ConfigError(f"override key '{'.'.join(parts)}': '{part}' is not a section")
        node = child
    node[parts[-1]] = value


def apply_overrides(cfg: Config, overrides: Sequence[str]) -> Config:
    data = cfg.to_dict()
    for text in overrides:
        parts, value = parse_override(text)
        _merge_override(data, parts, value)
    return Config.from_dict(data, source="overrides " + " ".join(overrides))


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Load YAML at ``path`` (or the defaults), then apply ``key=value`` overrides."""
    data: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise ConfigError(f"config file '{path}' not found")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file '{path}' is not valid YAML: {exc}") from exc
    for text in overrides:
        parts, value = parse_override(text)
        _merge_override(data, parts, value)
        source = f"{source} (with overrides)" if "overrides" not in source else source
    return Config.from_dict(data, source=source)


def dump_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
