"""The training epoch plan (pure): which clip, which caption and which sampling seed at each step.

An epoch's unit is a clip (``data.epoch_unit=clip``: every clip once, one of its captions drawn per
epoch) or a (clip, caption) pair (``caption_pair``: every pair once, as CLIP4Clip's
``--expand_msrvtt_sentences`` and its MSVD loader do). Pairs are shuffled like clips, so two pairs of
the same clip can share a batch: CLIP4Clip's ``DistributedSampler`` over its pair list allows it too,
and the loss then treats the other pair as a negative, as CLIP4Clip's does.

The driver lays out every epoch's shuffled order up front, so one Ray Data pass feeds the whole run
(decode actors start once, not once per epoch), data order and augmentation are reproducible from
``train.seed``, and a resumed run starts exactly at its step without decoding the skipped clips.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from raytrain.data.manifest import ClipRow

EPOCH_UNITS = ("clip", "caption_pair")


def epoch_items(rows: list[ClipRow], epoch_unit: str = "clip") -> tuple[np.ndarray, np.ndarray | None]:
    """What one epoch visits: ``(clip indices, caption indices)``. ``clip``: every clip, caption
    indices None (drawn per epoch); ``caption_pair``: every (clip, caption) pair, clip-major."""
    if epoch_unit not in EPOCH_UNITS:
        raise ValueError(f"unknown data.epoch_unit {epoch_unit!r}; valid: {list(EPOCH_UNITS)}")
    if epoch_unit == "clip":
        return np.arange(len(rows)), None
    counts = np.array([len(r.captions) for r in rows], dtype=np.int64)
    clips = np.repeat(np.arange(len(rows)), counts)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    return clips, np.arange(len(clips)) - starts


def num_epoch_items(rows: list[ClipRow], epoch_unit: str = "clip") -> int:
    """Clips, or (clip, caption) pairs, per epoch: what :func:`plan_steps` divides into batches."""
    return len(rows) if epoch_unit == "clip" else sum(len(r.captions) for r in rows)


def plan_steps(num_clips: int, world_size: int, batch_size: int, epochs: int,
               max_steps: int = 0) -> tuple[int, int]:
    """(steps per epoch, total steps). A step takes one global batch of ``batch_size * world_size``
    items (clips, or pairs: ``num_epoch_items``); each epoch visits every item at most once and drops
    the remainder."""
    per_epoch = num_clips // (world_size * batch_size)
    if per_epoch < 1:
        raise ValueError(f"the train split has {num_clips} clips (or caption pairs), fewer than one "
                         f"global batch (train.batch_size {batch_size} x scaling.num_workers {world_size})")
    total = per_epoch * epochs
    return per_epoch, min(total, max_steps) if max_steps > 0 else total


def end_step(total_steps: int, stop_at_step: int) -> int:
    """The step a run ends at: the plan's last, or ``train.stop_at_step`` when earlier (0 = off)."""
    return min(total_steps, stop_at_step) if stop_at_step > 0 else total_steps


def _mix(*values: int) -> int:
    """A 63-bit seed from integers (stable across processes and Python versions)."""
    return int(np.random.SeedSequence(list(values)).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def epoch_order(num_clips: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch, 0x5EED]).permutation(num_clips)


def epoch_samplings(seed: int, epoch: int, num_clips: int, samplings: int) -> np.ndarray:
    """With a frame cache: which of its ``samplings`` cached temporal samplings each clip uses in
    ``epoch``. Every clip cycles through all of them, from its own seeded offset (an epoch mixes them)."""
    offset = np.random.default_rng([seed, 0xCAC4E]).integers(samplings, size=num_clips)
    return (offset + epoch) % samplings


def build_plan(rows: list[ClipRow], global_batch: int, seed: int, start_step: int, end_step: int,
               samplings: int = 0, epoch_unit: str = "clip") -> pa.Table:
    """Rows for steps ``[start_step, end_step)``, ``global_batch`` per step, in step order.

    Columns: ``step``, ``clip`` (the row's index in ``rows``), ``path``, ``start_s``, ``end_s``,
    ``caption`` and ``caption_index`` (which of the clip's captions: drawn per epoch, or the pair's
    under ``epoch_unit=caption_pair``), ``sample_seed`` (seeds the clip's frame offsets for that epoch
    and pair), and with ``samplings`` > 0 (a frame cache) ``sampling``: the cached sampling used.
    """
    item_clip, item_caption = epoch_items(rows, epoch_unit)
    steps_per_epoch = len(item_clip) // global_batch
    if steps_per_epoch < 1:
        raise ValueError(f"{len(item_clip)} {epoch_unit}s are fewer than one global batch of {global_batch}")
    if not 0 <= start_step <= end_step:
        raise ValueError(f"bad step range [{start_step}, {end_step})")
    cols: dict[str, list] = {k: [] for k in ("step", "clip", "caption_index", "sample_seed", "sampling")}
    for epoch in range(start_step // steps_per_epoch, -(-end_step // steps_per_epoch)):
        order = epoch_order(len(item_clip), seed, epoch)
        if item_caption is None:  # one caption per clip and epoch
            choice = np.random.default_rng([seed, epoch, 0xCA9]).random(len(rows))
        sampling = epoch_samplings(seed, epoch, len(rows), samplings) if samplings > 0 else None
        first = max(start_step, epoch * steps_per_epoch)
        last = min(end_step, (epoch + 1) * steps_per_epoch)
        for step in range(first, last):
            offset = (step - epoch * steps_per_epoch) * global_batch
            for item in order[offset:offset + global_batch]:
                i = int(item_clip[item])
                if item_caption is None:
                    j = int(choice[i] * len(rows[i].captions))
                    sample_seed = _mix(seed, epoch, i)
                else:  # every pair of a clip gets its own offsets (and cached sampling) in an epoch
                    j = int(item_caption[item])
                    sample_seed = _mix(seed, epoch, i, j)
                cols["step"].append(step)
                cols["clip"].append(i)
                cols["caption_index"].append(j)
                cols["sample_seed"].append(sample_seed)
                if sampling is not None:
                    cols["sampling"].append(int((sampling[i] + (0 if item_caption is None else j)) % samplings))
    return _plan_table(rows, cols, samplings > 0)


def _plan_table(rows: list[ClipRow], cols: dict[str, list], with_sampling: bool) -> pa.Table:
    picked = [rows[i] for i in cols["clip"]]
    table = pa.table({
        "step": pa.array(cols["step"], pa.int64()), "clip": pa.array(cols["clip"], pa.int64()),
        "path": pa.array([r.path for r in picked], pa.string()),
        "start_s": pa.array([r.start_s for r in picked], pa.float64()),
        "end_s": pa.array([r.end_s for r in picked], pa.float64()),
        "caption": pa.array([r.captions[j] for r, j in zip(picked, cols["caption_index"])], pa.string()),
        "caption_index": pa.array(cols["caption_index"], pa.int32()),
        "sample_seed": pa.array(cols["sample_seed"], pa.int64()),
    })
    if with_sampling:
        table = table.append_column("sampling", pa.array(cols["sampling"], pa.int32()))
    return table
