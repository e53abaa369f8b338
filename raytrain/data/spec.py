"""What a decode actor is asked to make, built once from the config on the driver: frozen, so every
actor of a dataset decodes, caches, substitutes, tokenises and masks the same way. No Ray here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from raytrain.config import Config
from raytrain.data import cache_disk, frame_cache
from raytrain.data.batch import Column, check_mask_columns, eval_columns, train_columns
from raytrain.data.frame_sampling import Clip4ClipSampling
from raytrain.data.tokens import simple_tokenizer_kwargs


@dataclass(frozen=True)
class MaskSpec:
    """The random masks built per train clip: MASCOT's ablation (``patches`` > 0: high and low masks
    ``(T, patches)``) and MILES's tube (``tube_grid`` > 0: ``(tube_grid ** 2,)``)."""

    patches: int = 0
    high_ratio: float = 0.0
    low_ratio: float = 0.0
    tube_grid: int = 0
    tube_ratio: float = 0.5
    tube_block: tuple[int, int] = (2, 4)

    @classmethod
    def from_config(cls, cfg: Config, mask_columns: Sequence[str]) -> MaskSpec:
        masks = check_mask_columns(mask_columns)
        if not masks:
            return cls()
        from raytrain.model.clip_video import model_num_patches

        patches = model_num_patches(cfg.model.arch)
        miles = cfg.method.miles
        return cls(patches=patches if "mask_high" in masks else 0,
                   high_ratio=cfg.mask.high_ratio, low_ratio=cfg.mask.low_ratio,
                   tube_grid=round(patches ** 0.5) if "mask_tube" in masks else 0,
                   tube_ratio=miles.mask_ratio, tube_block=(miles.block_min, miles.block_max))

    @property
    def columns(self) -> tuple[str, ...]:
        return (*(("mask_high", "mask_low") if self.patches else ()), *(("mask_tube",) if self.tube_grid else ()))


def _cache_min_free(cfg: Config) -> int:
    """Measured here, on the driver, once per dataset (``cache_disk.measure_min_free``)."""
    d = cfg.data
    return cache_disk.measure_min_free(frame_cache.cache_root(cfg), d.cache_max_disk_fraction,
                                       d.cache_disk_reserve_gb, d.cache_budget_gb)


@dataclass(frozen=True)
class DecodeSpec:
    """One split's decode job. ``train``: random frame offsets from each row's ``sample_seed``, a
    tokenised caption and the masks; eval: segment centres, no text. ``cache_location`` set: frames
    are read through the frame cache (``cache_samplings`` per train clip, offsets seeded by ``seed``)."""

    decoder: str
    num_frames: int
    image_size: int
    train: bool
    arch: str = ""
    max_words: int = 32
    on_bad_video: str = "error"
    timeout_s: float = 0.0
    cache_location: str | None = None
    cache_samplings: int = 1
    cache_compression: str = "none"
    cache_budget_bytes: int = 0  # 0 = unlimited
    cache_min_free_bytes: int = 0  # free space the cache's writes leave on its disk (cache_disk.min_free_bytes)
    cache_token: str = ""  # the process building the datasets: its decode actors say "cache full" once
    seed: int = 0
    masks: MaskSpec = field(default_factory=MaskSpec)
    frame_sampling: str = "segments"  # or clip4clip: sample_fps, then up to num_frames, frame_mask column
    sample_fps: int = 1
    max_seconds: int = 0
    # train: open_clip's SimpleTokenizer arguments when it is the model's tokenizer, so that the actors
    # load it without the rest of open_clip (raytrain.data.tokens); None: open_clip.get_tokenizer
    simple_tokenizer: tuple[tuple[str, object], ...] | None = None

    @classmethod
    def from_config(cls, cfg: Config, image_size: int, train: bool, mask_columns: Sequence[str] = (),
                    cache_location: str | None = None) -> DecodeSpec:
        return cls(decoder=cfg.data.decoder, num_frames=cfg.data.num_frames, image_size=image_size, train=train,
                   arch=cfg.model.arch, max_words=cfg.data.max_words, on_bad_video=cfg.data.on_bad_video,
                   timeout_s=cfg.data.decode_timeout_s, cache_location=cache_location,
                   cache_samplings=frame_cache.num_samplings(cfg, train), seed=cfg.train.seed,
                   cache_compression=cfg.data.cache_compression,
                   cache_budget_bytes=round(cfg.data.cache_budget_gb * 1e9),
                   cache_min_free_bytes=_cache_min_free(cfg) if cache_location else 0,
                   cache_token=cache_disk.writer_token() if cache_location else "",
                   masks=MaskSpec.from_config(cfg, mask_columns) if train else MaskSpec(),
                   frame_sampling=cfg.data.frame_sampling, sample_fps=cfg.data.sample_fps,
                   max_seconds=cfg.data.max_seconds,
                   simple_tokenizer=simple_tokenizer_kwargs(cfg.model.arch, cfg.data.max_words) if train else None)

    @property
    def skip_bad(self) -> bool:
        return self.on_bad_video == "skip"

    @property
    def frame_mask(self) -> bool:
        return self.frame_sampling == "clip4clip"

    def sampling(self) -> Clip4ClipSampling | None:
        """What the decoders take in place of segment offsets (``None``: segments)."""
        return Clip4ClipSampling(self.num_frames, self.sample_fps, self.max_seconds) if self.frame_mask else None

    @property
    def columns(self) -> tuple[Column, ...]:
        """The batch columns this job emits (the schema of ``raytrain.data.batch``)."""
        if self.train:
            return train_columns(self.masks.columns, self.skip_bad, self.cache_location is not None, self.frame_mask,
                                 self.decoder == "auto")
        return eval_columns(self.skip_bad, self.frame_mask)
