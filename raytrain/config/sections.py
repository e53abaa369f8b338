"""The config sections: frozen dataclasses, each field with its check beside it, each section's
rules across its fields in its ``check()``, and the rules across sections in ``Config.check()``."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from raytrain.config.checks import Check, above, at_least, fail, knob, reported_metric, within
from raytrain.config.parse import build, merge_override, migrate_legacy
from raytrain.eval.metrics import LOWER_IS_BETTER


@dataclass(frozen=True)
class RunSection:
    name: str = "run"  # the run folder's name: <storage_path>/<name> (rerunning the same name resumes it)
    storage_path: str = "runs"  # local folder, shared filesystem path, or pyarrow URI (s3://, gs://)
    # Does every node see storage_path? auto: URIs and network mounts (NFS, ...) yes, other local paths
    # no; a multi-node cluster refuses a path that is not shared (docs/cluster.md).
    shared_storage: Literal["auto", True, False] = knob(
        "auto", Check(lambda v: isinstance(v, bool) or v == "auto", "'auto', true or false"))


@dataclass(frozen=True)
class DataSection:
    manifest: str = "data/synthvtt/manifest.parquet"  # the Parquet manifest (raytrain prepare / synth)
    train_split: str = "train"  # the manifest split trained on
    eval_split: str = "test"  # the manifest split evaluated on
    num_frames: int = knob(8, at_least(1))  # frames sampled per clip
    max_words: int = knob(32, at_least(4))  # caption length in tokens (CLIP4Clip: 32)
    # decord (decord2's wheel when installed), pyav, auto (decord, then PyAV for a file decord cannot
    # read: counted, logged), torchcodec / torchcodec-cuda (NVDEC; the optional [torchcodec] extra).
    # docs/decoders.md: which formats each reads and how fast.
    decoder: Literal["auto", "decord", "pyav", "torchcodec", "torchcodec-cuda"] = "auto"
    # Ray Data decode actors of the training stream in all (with per_rank_plan shared by the ranks'
    # pools, at least one each) and of the evaluation stream.
    decode_actors: int = knob(1, at_least(1))
    decode_cpus: float = knob(0.5, above(0))  # CPUs each decode actor reserves
    decode_batch_size: int = knob(8, at_least(1))  # clips per map_batches call
    # A custom Ray resource each decode actor requests (e.g. "decode", given only to CPU nodes) so the
    # decode actors stay off the GPU nodes; "" = no custom resource.
    decode_resource: str = ""
    decode_resource_per_actor: float = knob(1.0, above(0))  # units of decode_resource per decode actor
    synth_num_videos: int = knob(0, at_least(0))  # > 0: `raytrain demo` generates SynthVTT at data.manifest's folder
    synth_seed: int = 0  # the seed of the SynthVTT set `raytrain demo` generates
    # A clip that cannot be decoded: "error" stops the run naming the file and the decoder's message;
    # "skip" replaces it by a good clip from the train split (counted, reported; see docs/faults.md).
    on_bad_video: Literal["error", "skip"] = "error"
    decode_timeout_s: float = knob(60.0, at_least(0, "0 = no limit"))  # a slower decode is a bad video
    probe_videos: bool = False  # before Ray starts, open each video of the splits used and decode a frame (data/probe.py)
    # True: every rank streams its own slice of each planned step in plan order (a decode pool per
    # rank), so batches are reproducible and a resumed run replays the uninterrupted one bit for bit
    # (and faster here: docs/faults.md); False: Ray Data's dynamic streaming split (order by timing).
    per_rank_plan: bool = True
    # frames: the first time a clip is needed its sampled, resized uint8 frames are written to Arrow
    # shards (raytrain/data/frame_cache.py); later epochs and evaluations read them instead of decoding.
    cache: Literal["none", "frames"] = "none"
    cache_samplings: int = knob(4, at_least(1))  # temporal samplings cached per train clip; epochs cycle through them
    cache_dir: str = ""  # "" = <run>/frame_cache; a shared path/URI lets runs (sweep trials) share it
    # Arrow IPC buffer compression of new shards (lz4: fast; zstd: smaller). Each shard says its own, so
    # changing it keeps the shards already written (not part of the cache key; docs/speed.md).
    cache_compression: Literal["none", "lz4", "zstd"] = "none"
    # Size budget of each split's cache folder in GB (1e9 bytes); 0 = the default budget below. When a
    # new shard would exceed it, no more shards are written (said once, with the figures) and the clips
    # not cached are decoded every epoch. Concurrent actors may overshoot by about one shard each.
    cache_budget_gb: float = knob(0.0, at_least(0, "0 = the share of the disk below"))
    # Without a cache_budget_gb, the whole cache (all its folders) takes at most this share of the space
    # free where it lives, plus what it holds already, measured when a dataset opens it (docs/speed.md).
    cache_max_disk_fraction: float = knob(0.5, within(0, 1, closed="high"))
    # GB always left free on the cache's disk for checkpoints and logs, with or without cache_budget_gb
    # (a ViT-B/32 checkpoint with its AdamW state is ~1.8 GB); 0 = none.
    cache_disk_reserve_gb: float = knob(2.0, at_least(0))
    # What one epoch visits: clip = every clip once with one caption drawn per epoch; caption_pair = every
    # (clip, caption) pair once (CLIP4Clip's --expand_msrvtt_sentences, and its MSVD loader), so an
    # epoch of MSR-VTT 9k is 180k pairs, not 9k clips (raytrain/data/plan.py).
    epoch_unit: Literal["clip", "caption_pair"] = "clip"
    # segments: num_frames equal segments, one frame each (random in training, centres in evaluation);
    # clip4clip: frames at sample_fps (CLIP4Clip's cv2 reader), then num_frames of them uniformly
    # (its slice_framepos=2), fewer for short clips, zero-padded, with a frame_mask batch column
    # (raytrain/data/frame_sampling.py).
    frame_sampling: Literal["segments", "clip4clip"] = "segments"
    sample_fps: int = knob(1, at_least(1))  # frame_sampling=clip4clip: frames per second before the uniform pick
    # frame_sampling=clip4clip: read seconds [0, max_seconds] of a clip at most (CLIP4Clip's DiDeMo
    # loader reads [0, 31]: the annotated part); 0 = the whole clip or segment.
    max_seconds: int = knob(0, at_least(0, "0 = no limit"))


@dataclass(frozen=True)
class ModelSection:
    arch: str = "ViT-B-32"  # any open_clip model name, or one of raytrain's tiny configs (RT-*)
    pretrained: str | None = None  # local checkpoint path; None = random init
    temporal: Literal["meanP", "seqLSTM", "seqTransf"] = "meanP"  # CLIP4Clip's three heads
    temporal_layers: int = knob(4, at_least(1))  # blocks of the seqTransf / seqLSTM head
    max_logit_scale: float = knob(100.0, above(0))  # the upper bound of the learnable logit scale
    # Recompute each transformer block's activations in the backward pass instead of storing them
    # (towers and seqTransf): less memory for long clips / big batches, ~30 % more compute.
    grad_checkpointing: bool = False
    # seqTransf's start: text = CLIP4Clip's (frame positions and blocks copied from the text tower,
    # which must have the embedding width and >= temporal_layers blocks), random = from scratch,
    # auto = text where the text tower allows it, else random.
    temporal_init: Literal["auto", "text", "random"] = "auto"
    # forward: the scale is clamped at ln(max_logit_scale) inside the forward (no gradient past it);
    # after_step: CLIP4Clip's clamp of the parameter in place after each optimizer step.
    logit_scale_clamp: Literal["forward", "after_step"] = "forward"


@dataclass(frozen=True)
class MaskSection:
    """Patch masks for the masked-view methods (MASCOT's high/low-informed masks)."""
    strategy: Literal["attention", "random"] = "attention"  # random: built by the Ray Data workers
    high_ratio: float = knob(0.3, within(0, 1))  # share of each frame's patches in the high-informed mask
    low_ratio: float = knob(0.3, within(0, 1))  # share in the low-informed mask


@dataclass(frozen=True)
class MascotSection:
    """MASCOT parts, each switchable, and its loss weights (methods.md §1; our defaults)."""
    masked_views: bool = True  # the two masked passes and their InfoNCE (L_mv)
    isc: bool = True  # informed semantics completion: decoder + reconstruction loss (L_rec)
    co_learning: bool = True  # dual-mask co-learning consistency (L_co)
    co_views: Literal["both", "low"] = "both"  # L_co's masked views; low: only KL(sg(p) | p_low)
    attention: Literal["cls", "text_aware"] = "cls"  # patch ranking source
    lambda_mv: float = knob(0.5, at_least(0))
    lambda_rec: float = knob(1.0, at_least(0))
    lambda_co: float = knob(0.5, at_least(0))
    lambda_tp: float = knob(0.0, at_least(0))  # text-patch alignment of the completed patches (0 = off)
    decoder_layers: int = knob(2, at_least(1))
    decoder_heads: int = knob(8, at_least(1))
    # ISC decoder's visible tokens: the raw final residual stream, or through the tower's ln_post first
    decoder_input: Literal["residual", "ln_post"] = "residual"  # residual: measured, docs/mascot.md


@dataclass(frozen=True)
class MilesSection:
    """MILES parts (methods.md §2): the training code is not released, so all values are our defaults."""
    mask_ratio: float = knob(0.5, within(0, 1))  # share ρ of each frame's patches in the tube mask
    block_min: int = knob(2, at_least(1))  # side lengths (patches) of the random rectangles of the tube mask
    block_max: int = 4
    # EMA snapshot encoder: θ_ema ← m θ_ema + (1 − m) θ after each optimizer step
    momentum: float = knob(0.999, within(0, 1, closed="low"))
    predictor: Literal["transformer", "linear"] = "transformer"  # linear: the cheaper ablation
    predictor_layers: int = knob(2, at_least(1))
    predictor_heads: int = knob(12, at_least(1))  # rounded down to a divisor of the ViT width
    lambda_mvm: float = knob(1.0, at_least(0))
    contrastive_view: Literal["unmasked", "masked"] = "unmasked"  # Option B (ours) / Option A (paper figure)

    def check(self) -> list[tuple[str, str]]:
        if self.block_max < self.block_min:
            return [fail("block_max", f">= method.miles.block_min ({self.block_min})", self.block_max)]
        return []


@dataclass(frozen=True)
class NegNCESection:
    """NegNCE (methods.md §3.2; official code ``dmae_utils.NegNCE``)."""
    scale: float = knob(100.0, above(0))  # fixed, not the learnable CLIP scale
    c_pos: float = knob(1.0, at_least(0))
    c_neg: float = knob(0.5, at_least(0))
    margin: float = 0.0  # δ: a negative is hard if it beats its row's or column's positive minus δ


@dataclass(frozen=True)
class DmaeSection:
    """DMAE token-wise similarity (methods.md §3.1; official code ``_get_wti_similarity``)."""
    interaction: Literal["att_ti", "sentence", "words"] = "att_ti"  # att_ti: ½(sentence + word branch)
    neighbour: bool = True  # W_VA frame-neighbour enhancement (code flag l3_with_nfc)
    neighbour_weight: float = knob(0.5, at_least(0))
    text_block: int = knob(32, at_least(1))  # texts x videos per block of the (texts, videos, words, frames) tensor
    video_block: int = knob(256, at_least(1))


@dataclass(frozen=True)
class TpmclSection:
    """TPM-CL (methods.md §3.3; official code ``get_partial_similarity``), used by method 'dmae'."""
    enabled: bool = True
    threshold: float = knob(0.6, within(0, 1, closed="high"))  # τ: mask the top tokens whose cumulative weight is < τ
    margin: float = knob(0.6, at_least(0))  # μ (l3_margin_loss_thresh)
    # The three partial margins (all on = code partial_type 4; 1+2 = partial_type 2; 3 = partial_type 3):
    margin1: bool = True  # sim(t, F) > sim(t, F^p)
    margin2: bool = True  # sim(t_g, F) > sim(t_g, F^p)
    margin3: bool = True  # sim(t_g, F) > sim(t_g^p, F)
    lambda_tpm: float = knob(1.0, at_least(0))


@dataclass(frozen=True)
class MethodSection:
    name: Literal["clip4clip", "mascot", "miles", "dmae"] = "clip4clip"  # the training method (methods.md)
    # Loss on the main G×G similarity: auto = negnce for dmae, infonce for the others.
    contrastive: Literal["auto", "infonce", "negnce"] = "auto"
    mascot: MascotSection = field(default_factory=MascotSection)
    miles: MilesSection = field(default_factory=MilesSection)
    negnce: NegNCESection = field(default_factory=NegNCESection)
    dmae: DmaeSection = field(default_factory=DmaeSection)
    tpmcl: TpmclSection = field(default_factory=TpmclSection)
    # true: each rank scores only its B local queries against the G gathered candidates (B×G, both
    # directions) instead of the full G×G matrix; the same gradients after DDP averaging, less memory and
    # compute per rank for large global batches (open_clip's local_loss). InfoNCE only: NegNCE's
    # hard-negative set needs the whole matrix, so it is refused there.
    local_loss: bool = False

    @property
    def main_loss(self) -> Literal["infonce", "negnce"]:
        """``contrastive`` with ``auto`` resolved: NegNCE for dmae (as in its code), else InfoNCE."""
        if self.contrastive != "auto":
            return self.contrastive
        return "negnce" if self.name == "dmae" else "infonce"

    def check(self) -> list[tuple[str, str]]:
        if self.local_loss and self.main_loss == "negnce":
            return [fail("local_loss", "false with NegNCE (its hard-negative set needs the full G×G matrix; "
                                       "set method.contrastive=infonce to use it)", self.local_loss)]
        return []


@dataclass(frozen=True)
class OptimSection:
    lr: float = knob(1e-4, above(0))  # new modules (temporal transformer, logit scale, method heads)
    tower_lr: float = knob(1e-7, at_least(0))  # the open_clip towers (CLIP4Clip fine-tunes them gently)
    weight_decay: float = knob(0.2, at_least(0))  # AdamW's decoupled weight decay
    beta1: float = knob(0.9, within(0, 1, closed="low"))  # AdamW's first-moment decay
    beta2: float = knob(0.98, within(0, 1, closed="low"))  # AdamW's second-moment decay
    eps: float = knob(1e-6, above(0))  # AdamW's denominator epsilon
    warmup_fraction: float = knob(0.1, within(0, 1, closed="low"))  # share of the steps with a linear LR warmup
    grad_clip: float = knob(1.0, at_least(0, "0 disables clipping"))  # max global gradient norm
    # cosine: linear warmup, then a cosine re-based to start at the end of warmup; clip4clip_cosine:
    # CLIP4Clip's BertAdam warmup_cosine, 0.5 (1 + cos(pi * step / total)) after warmup, where the
    # progress counts every step (the LR at the end of warmup is already below the peak).
    schedule: Literal["cosine", "clip4clip_cosine"] = "cosine"
    # global: clip the gradient of the global-batch loss (what DDP gives raytrain) at grad_clip;
    # clip4clip: clip what CLIP4Clip clips, the DDP average of each rank's gradient of the gathered loss,
    # W times smaller (logit scale apart), at grad_clip globally and then per tensor (its BertAdam's
    # max_grad_norm); the optimizer sees that gradient too (raytrain/train/clipping.py).
    grad_clip_mode: Literal["global", "clip4clip"] = "global"
    # grad_clip_mode=clip4clip: the number of GPUs of the CLIP4Clip run to match (its gradient is 1/W);
    # 0 = scaling.num_workers. E.g. 4 on one GPU with batch 128 reproduces its 4-GPU README command.
    clip4clip_ranks: int = knob(0, at_least(0, "0 = scaling.num_workers"))
    # raytrain: towers at tower_lr, the rest (logit scale included) at lr, no weight decay on 1-d
    # parameters; clip4clip: its prep_optimizer's groups, every clip.* parameter (logit scale included)
    # at tower_lr, and weight decay on every parameter whose name has no 'bias' (LayerNorm gains too).
    groups: Literal["raytrain", "clip4clip"] = "raytrain"


@dataclass(frozen=True)
class ScalingSection:
    """Where the Train workers run (Ray's ``ScalingConfig``)."""
    num_workers: int = knob(2, at_least(1))
    use_gpu: bool = False
    cpus_per_worker: float = knob(1.0, above(0))
    # Ray placement group strategy of the Train workers (SPREAD: one worker per node where possible).
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"
    torch_threads: int = knob(1, at_least(1))  # CPU threads per worker (avoid oversubscribing small machines)


@dataclass(frozen=True)
class TrainSection:
    """The optimisation loop: batches, length, precision, seed, and what a failure does."""
    batch_size: int = knob(32, at_least(2, "a contrastive batch needs negatives"))  # clips per step per worker
    epochs: int = knob(5, at_least(1))
    max_steps: int = knob(0, at_least(0))  # > 0 caps the total number of optimizer steps
    stop_at_step: int = knob(0, at_least(0))  # > 0: checkpoint and stop cleanly after this step
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast on GPU, fp32 on CPU
    # torch.compile the training objective (after DDP wraps it) with this mode; none = eager.
    compile: Literal["none", "default", "reduce-overhead", "max-autotune"] = "none"
    log_every: int = knob(10, at_least(1))  # steps between progress lines (rank 0) and TensorBoard points
    seed: int = 0
    on_nan: Literal["skip", "stop"] = "stop"  # a non-finite loss or gradient: skip the update, or stop
    # Worker-group restarts (from the latest checkpoint) before the run fails; -1 retries forever.
    max_failures: int = knob(0, at_least(-1, "-1 retries forever"))


@dataclass(frozen=True)
class CheckpointSection:
    """When checkpoints are written and which are kept."""
    every: int = knob(50, at_least(1))  # steps between checkpoints (a run also checkpoints at its end)
    keep: int = knob(2, at_least(1))
    keep_best_by: str = knob("", reported_metric(allow_empty=True))  # "" keeps the latest `keep`
    keep_best_order: Literal["min", "max"] = "min"


@dataclass(frozen=True)
class EvalSection:
    batch_size: int = knob(32, at_least(1))  # clips embedded at a time
    text_batch_size: int = knob(256, at_least(1))  # captions embedded at a time
    # Queries scored at a time against every candidate (metrics stay exact; memory ~ block x candidates)
    sim_block: int = knob(1024, at_least(1))
    at_end: bool = True  # evaluate the eval split once training ends
    # > 0: also evaluate at every checkpoint whose step is a multiple of this (a sweep's early stopping
    # on R@1 needs the metric during training); a multiple of checkpoint.every.
    every: int = knob(0, at_least(0, "0 = only at the end"))
    # Video→text on multi-caption test sets (raytrain/eval/metrics.py): raytrain = a video query ranks
    # every caption and counts each wrong caption above its best one; clip4clip = CLIP4Clip's
    # multi-sentence protocol, captions grouped by video (each video scored by its best caption), a
    # video query ranks videos. The same with one caption per video (MSR-VTT 1k-A, DiDeMo, ActivityNet).
    v2t_protocol: Literal["raytrain", "clip4clip"] = "raytrain"
    # Test-time re-ranking of both directions (raytrain/eval/rerank.py, docs/reranking.md), on the
    # blocked evaluation. dsl (dual softmax, CAMoE) and inverted_softmax normalise each gallery item by
    # the scores of *all test queries*: transductive, they need every query at once (a search engine
    # answering one query at a time cannot use them). qb_norm (QB-Norm with dynamic inverted softmax)
    # needs only a query bank: train captions (t2v) and train videos (v2t), embedded by the model.
    rerank: Literal["none", "dsl", "inverted_softmax", "qb_norm"] = "none"
    dsl_temperature: float = knob(0.01, above(0))  # T in s * softmax_queries(s / T); s are cosines
    inverted_softmax_temperature: float = knob(0.05, above(0))  # T in exp(s / T) / sum_queries exp(s / T)
    qb_norm_beta: float = knob(20.0, above(0))  # QB-Norm's inverse temperature (its paper: 20)
    qb_norm_k: int = knob(1, at_least(1))  # a bank query activates its top-k gallery items
    qb_norm_bank_size: int = knob(5000, at_least(1))  # train captions in the t2v bank (all if fewer)
    qb_norm_video_bank_size: int = knob(1000, at_least(1))  # train videos in the v2t bank (all if fewer)
    qb_norm_bank_seed: int = 0  # which train captions / videos form the banks
    # MASCOT/MILES runs: eval clips whose masks are drawn into TensorBoard (masks/*) at each evaluation
    mask_pictures: int = knob(2, at_least(0, "0 = off"))
    retrieval_examples: int = knob(4, at_least(0, "0 = off"))  # test captions whose top clips go to TensorBoard
    retrieval_examples_top_k: int = knob(5, at_least(1))  # clips shown per example caption


@dataclass(frozen=True)
class FaultsSection:
    """Fault injection for tests and bench/faults.py (0 = off). Kill/crash faults fire once per run
    folder (a marker file), so the restarted worker group goes on."""
    kill_at_step: int = knob(0, at_least(0, "0 = off"))  # the worker of rank kill_rank exits hard after this step
    kill_rank: int = knob(1, at_least(0))
    checkpoint_crash_at_step: int = knob(0, at_least(0, "0 = off"))  # rank 0 dies halfway through writing it
    nan_at_step: int = knob(0, at_least(0, "0 = off"))  # the loss of this step (1-based) is NaN on every rank

    @property
    def enabled(self) -> bool:
        return bool(self.kill_at_step or self.checkpoint_crash_at_step or self.nan_at_step)


@dataclass(frozen=True)
class SweepSection:
    """``raytrain sweep``: Ray Tune over a search space (search_spaces/*.yaml), one Ray Train run per trial."""
    name: str = "sweep"  # the sweep folder: <run.storage_path>/<sweep.name>
    metric: str = knob("t2v_R1", reported_metric())  # t2v_*/v2t_* (eval) or loss (training)
    mode: Literal["max", "min"] = "max"
    search: Literal["random", "grid"] = "random"  # random: sample ranges/choices; grid: enumerate
    num_samples: int = knob(1, at_least(1))  # random: samples (each crossed with the grid keys); grid: repeats
    # 0: as many as the cluster's CPUs/GPUs fit (trial = workers + decode)
    max_concurrent_trials: int = knob(0, at_least(0, "0 = derived from the cluster"))
    scheduler: Literal["none", "asha"] = "none"
    # optimizer steps before ASHA may stop a trial; 0 = the first evaluation
    asha_grace_period: int = knob(0, at_least(0, "0 = the first evaluation"))
    asha_reduction_factor: float = knob(2.0, above(1))
    seed: int = 0  # the sampler's seed, so a random sweep draws the same trials again

    @property
    def lower_is_better(self) -> bool:
        return self.metric in LOWER_IS_BETTER


@dataclass(frozen=True)
class RaySection:
    address: str | None = None  # None: connect to a running cluster if any, else start a local one
    num_cpus: int | None = None  # logical CPUs for a local Ray started by raytrain
    object_store_mb: int | None = None  # object store size of a local Ray started by raytrain (None: Ray's)
    dashboard: bool = False  # a local Ray's dashboard, on 127.0.0.1: State API, Train's PG cleanup; ~0.9 GB RAM


@dataclass(frozen=True)
class Config:
    run: RunSection = field(default_factory=RunSection)
    data: DataSection = field(default_factory=DataSection)
    model: ModelSection = field(default_factory=ModelSection)
    method: MethodSection = field(default_factory=MethodSection)
    mask: MaskSection = field(default_factory=MaskSection)
    optim: OptimSection = field(default_factory=OptimSection)
    scaling: ScalingSection = field(default_factory=ScalingSection)
    train: TrainSection = field(default_factory=TrainSection)
    checkpoint: CheckpointSection = field(default_factory=CheckpointSection)
    eval: EvalSection = field(default_factory=EvalSection)
    faults: FaultsSection = field(default_factory=FaultsSection)
    sweep: SweepSection = field(default_factory=SweepSection)
    ray: RaySection = field(default_factory=RaySection)

    def check(self) -> list[tuple[str, str]]:
        """Rules across sections: ``(key, what is wrong)`` pairs."""
        out = []
        if self.faults.kill_at_step and self.faults.kill_rank >= self.scaling.num_workers:
            out.append(fail("faults.kill_rank", f"< scaling.num_workers ({self.scaling.num_workers})",
                             self.faults.kill_rank))
        if self.eval.every % self.checkpoint.every:
            out.append(fail("eval.every", f"a multiple of checkpoint.every ({self.checkpoint.every})",
                             self.eval.every))
        once_only = [k for k in ("kill_at_step", "checkpoint_crash_at_step") if getattr(self.faults, k)]
        if once_only and "://" in self.run.storage_path:
            out.append((f"faults.{once_only[0]}", ("needs a local run.storage_path (the fault's once-only "
                                                  "marker lives in the run folder)")))
        return out

    @property
    def train_decode_pools(self) -> tuple[int, int]:
        """``(pools, actors each)`` of the training stream: one pool of ``data.decode_actors``, or with
        ``data.per_rank_plan`` one per rank sharing them (at least one actor each)."""
        if not self.data.per_rank_plan:
            return 1, self.data.decode_actors
        world = self.scaling.num_workers
        return world, -(-self.data.decode_actors // world)

    @property
    def needs_eval(self) -> bool:
        """Whether the run evaluates the eval split at all (at the end or during training)."""
        return self.eval.at_end or self.eval.every > 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> Config:
        return build(cls, migrate_legacy(data), prefix="", source=source)

    def replace(self, **overrides: Any) -> Config:
        """Return a copy with dotted-key values set (typed values, no YAML parsing), e.g.
        ``cfg.replace(**{"optim.lr": 1e-3, "run.name": "24e38_00000"})``; checked like a file."""
        data = self.to_dict()
        for key, value in overrides.items():
            merge_override(data, key.split("."), value)
        return Config.from_dict(data, source="values " + ", ".join(f"{k}={v!r}" for k, v in overrides.items()))

