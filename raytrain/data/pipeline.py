"""The Ray Data graph: epoch plan → decode actors (frames uint8 + tokens) → Ray Train.

This is the only module of ``raytrain.data`` that imports Ray. Decoding and tokenising happen in a
callable class on CPU actors (``raytrain.data.decode_clips``, set up once per actor, told what to do
by a frozen ``DecodeSpec``); frames stay uint8 all the way to the trainer.
The manifest is read and validated once on the driver (``load_manifest``); training streams the
epoch plan built from it (``raytrain.data.plan``), evaluation the eval split in manifest order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from raytrain.config import Config
from raytrain.data import frame_cache
from raytrain.data.decode_clips import DecodeClips
from raytrain.data.manifest import ClipRow
from raytrain.data.plan import build_plan
from raytrain.data.spec import DecodeSpec
from raytrain.data.substitute import substitute_rows


def _decode(ds, cfg: Config, image_size: int, train: bool, rows: list[ClipRow] | None = None,
            cache_location: str | None = None, mask_columns: Sequence[str] = (), actors: int | None = None):
    """``ds`` through ``actors`` decode actors (default ``data.decode_actors``; :class:`DecodeClips`,
    set up once per actor)."""
    import ray.data

    spec = DecodeSpec.from_config(cfg, image_size, train, mask_columns, cache_location)
    substitutes = substitute_rows(rows) if train and spec.skip_bad else ()
    return ds.map_batches(
        DecodeClips,
        fn_constructor_kwargs={"spec": spec, "substitutes": substitutes},
        batch_size=cfg.data.decode_batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors or cfg.data.decode_actors),
        num_cpus=cfg.data.decode_cpus,
        **decode_remote_args(cfg),
    )


def decode_remote_args(cfg: Config) -> dict:
    """``data.decode_resource``: each decode actor also requests that custom resource, so Ray places
    the actors only on the nodes that offer it (CPU decode nodes), keeping GPU nodes' CPUs for Train."""
    if not cfg.data.decode_resource:
        return {}
    return {"resources": {cfg.data.decode_resource: cfg.data.decode_resource_per_actor}}


def prepare_cache(cfg: Config, rows: list[ClipRow], image_size: int, train: bool) -> str | None:
    """``data.cache=frames``: the split's frame-cache folder (stale ones invalidated); else None."""
    if cfg.data.cache != "frames":
        return None
    split = cfg.data.train_split if train else cfg.data.eval_split
    return frame_cache.prepare(cfg, rows, split, image_size, train)


def _plan_samplings(cfg: Config) -> int:
    return frame_cache.num_samplings(cfg, train=True) if cfg.data.cache == "frames" else 0


def _blocks(num_rows: int, rows_per_block: int) -> int:
    return max(1, min(-(-num_rows // max(1, rows_per_block)), 2000))


def _table_dataset(table, rows_per_block: int):
    """``table`` as a dataset, in order, cut into blocks on the driver: a ``repartition`` would run Ray
    tasks, which wait forever when the decode actors hold every CPU of a small cluster. The blocks'
    metadata is computed here too (``from_blocks``): ``from_arrow`` runs one Ray task per block for it,
    4-5 s for the 117 blocks of a 3-epoch plan of 156 clips on 2 loaded cores, before any actor starts."""
    import ray.data

    size = -(-table.num_rows // _blocks(table.num_rows, rows_per_block)) or 1
    blocks = [table.slice(i, size) for i in range(0, table.num_rows, size)] or [table]
    return ray.data.from_blocks(blocks) if hasattr(ray.data, "from_blocks") else ray.data.from_arrow(blocks)


def train_datasets(cfg: Config, rows: list[ClipRow], image_size: int, start_step: int, end_step: int,
                   mask_columns: Sequence[str] = ()) -> dict:
    """The Train datasets for steps ``[start_step, end_step)``: ``{"train": ...}`` split by Ray Data, or
    with ``data.per_rank_plan`` one dataset per rank (``rank_dataset_name``)."""
    if cfg.data.per_rank_plan:
        return train_datasets_per_rank(cfg, rows, image_size, start_step, end_step, mask_columns)
    return {"train": train_dataset(cfg, rows, image_size, start_step, end_step, mask_columns)}


def train_dataset(cfg: Config, rows: list[ClipRow], image_size: int, start_step: int, end_step: int,
                  mask_columns: Sequence[str] = ()):
    """One pass over the epoch plan for steps ``[start_step, end_step)``."""
    global_batch = cfg.train.batch_size * cfg.scaling.num_workers
    plan = build_plan(rows, global_batch, cfg.train.seed, start_step, end_step, _plan_samplings(cfg),
                      cfg.data.epoch_unit)
    ds = _table_dataset(plan, cfg.data.decode_batch_size)
    return _decode(ds, cfg, image_size, train=True, rows=rows,
                   cache_location=prepare_cache(cfg, rows, image_size, train=True), mask_columns=mask_columns)


def rank_dataset_name(rank: int) -> str:
    return f"train_rank{rank}"


def train_datasets_per_rank(cfg: Config, rows: list[ClipRow], image_size: int, start_step: int,
                            end_step: int, mask_columns: Sequence[str] = ()) -> dict:
    """``data.per_rank_plan``: one dataset per rank holding that rank's ``batch_size`` rows of every
    planned step, in plan order. Read unsplit with ``preserve_order``, each rank's batches are then a
    pure function of the plan (no dynamic split), so a restarted run sees exactly the same batches."""
    per_rank = cfg.train.batch_size
    world = cfg.scaling.num_workers
    plan = build_plan(rows, per_rank * world, cfg.train.seed, start_step, end_step, _plan_samplings(cfg),
                      cfg.data.epoch_unit)
    cache_location = prepare_cache(cfg, rows, image_size, train=True)
    position = np.arange(plan.num_rows) % (per_rank * world)
    out = {}
    for rank in range(world):
        part = plan.take(np.flatnonzero(position // per_rank == rank))
        ds = _table_dataset(part, cfg.data.decode_batch_size)
        out[rank_dataset_name(rank)] = _decode(ds, cfg, image_size, train=True, rows=rows,
                                               cache_location=cache_location, mask_columns=mask_columns,
                                               actors=cfg.train_decode_pools[1])
    return out


def fill_dataset(cfg: Config, rows: list[ClipRow], image_size: int, train: bool, mask_columns: Sequence[str] = ()):
    """``(dataset, cache folder)``: every clip of a split once through the decode actors with the frame
    cache on (``raytrain cache``): a train clip's first visit writes all of its samplings, an eval clip
    its centres. Read it to the end; the frames themselves are not needed."""
    location = prepare_cache(cfg, rows, image_size, train)
    if not train:
        return _decode(_eval_items(cfg, rows), cfg, image_size, train=False, cache_location=location), location
    table = pa.table({
        "step": pa.array([0] * len(rows), pa.int64()), "clip": pa.array(range(len(rows)), pa.int64()),
        "path": pa.array([r.path for r in rows], pa.string()),
        "start_s": pa.array([r.start_s for r in rows], pa.float64()),
        "end_s": pa.array([r.end_s for r in rows], pa.float64()),
        "caption": pa.array([r.captions[0] for r in rows], pa.string()),
        "sample_seed": pa.array([0] * len(rows), pa.int64()), "sampling": pa.array([0] * len(rows), pa.int32())})
    ds = _table_dataset(table, cfg.data.decode_batch_size)
    return _decode(ds, cfg, image_size, train=True, rows=rows, cache_location=location,
                   mask_columns=mask_columns), location


def eval_dataset(cfg: Config, rows: list[ClipRow], image_size: int):
    """Eval clips in manifest order, each carrying ``video_index`` (its column in the sim matrix)."""
    return _decode(_eval_items(cfg, rows), cfg, image_size, train=False,
                   cache_location=prepare_cache(cfg, rows, image_size, train=False))


def bank_dataset(cfg: Config, rows: list[ClipRow], image_size: int):
    """QB-Norm's bank clips (train rows) decoded as eval clips are (same frames rule), ``video_index``
    in bank order; never through the frame cache, whose eval folder holds the eval split's clips."""
    plain = cfg.replace(**{"data.cache": "none"}) if cfg.data.cache != "none" else cfg
    return _decode(_eval_items(plain, rows), plain, image_size, train=False, cache_location=None)


def _eval_items(cfg: Config, rows: list[ClipRow]):
    import ray.data

    items = [{"path": r.path, "video_index": i,
              "start_s": np.nan if r.start_s is None else r.start_s,
              "end_s": np.nan if r.end_s is None else r.end_s}
             for i, r in enumerate(rows)]
    return ray.data.from_items(items, override_num_blocks=_blocks(len(items), cfg.data.decode_batch_size))


def eval_texts(rows: list[ClipRow]) -> tuple[list[str], np.ndarray]:
    """Every caption of the eval clips and the index of its clip (multi-caption evaluation)."""
    texts, owner = [], []
    for i, row in enumerate(rows):
        texts.extend(row.captions)
        owner.extend([i] * len(row.captions))
    return texts, np.asarray(owner, dtype=np.int64)
