"""The training epoch plan (pure): which clip, which caption and which sampling seed at each step.

The driver lays out every epoch's shuffled order up front, so one Ray Data pass feeds the whole run
(decode actors start once, not once per epoch), data order and augmentation are reproducible from
``train.seed``, and a resumed run starts exactly at its step without decoding the skipped clips.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from raytrain.data.manifest import ClipRow


def plan_steps(num_clips: int, world_size: int, batch_size: int, epochs: int,
               max_steps: int = 0) -> tuple[int, int]:
    """(steps per epoch, total steps). A step takes one global batch of ``batch_size * world_size``
    clips; each epoch visits every clip at most once and drops the remainder."""
    per_epoch = num_clips // (world_size * batch_size)
    if per_epoch < 1:
        raise ValueError(f"the train split has {num_clips} clips, fewer than one global batch "
                         f"(train.batch_size {batch_size} x scaling.num_workers {world_size})")
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
               samplings: int = 0) -> pa.Table:
    """Rows for steps ``[start_step, end_step)``, ``global_batch`` per step, in step order.

    Columns: ``step``, ``clip`` (the row's index in ``rows``), ``path``, ``start_s``, ``end_s``, ``caption`` (one of the clip's captions,
    drawn per epoch), ``sample_seed`` (seeds the clip's frame offsets for that epoch), and with
    ``samplings`` > 0 (a frame cache) ``sampling``: the cached sampling the clip's frames come from.
    """
    steps_per_epoch = len(rows) // global_batch
    if steps_per_epoch < 1:
        raise ValueError(f"{len(rows)} clips are fewer than one global batch of {global_batch}")
    if not 0 <= start_step <= end_step:
        raise ValueError(f"bad step range [{start_step}, {end_step})")
    cols: dict[str, list] = {k: [] for k in ("step", "clip", "path", "start_s", "end_s", "caption", "sample_seed",
                                             "sampling")}
    for epoch in range(start_step // steps_per_epoch, -(-end_step // steps_per_epoch)):
        order = epoch_order(len(rows), seed, epoch)
        caption_rng = np.random.default_rng([seed, epoch, 0xCA9])
        choice = caption_rng.random(len(rows))
        sampling = epoch_samplings(seed, epoch, len(rows), samplings) if samplings > 0 else None
        first = max(start_step, epoch * steps_per_epoch)
        last = min(end_step, (epoch + 1) * steps_per_epoch)
        for step in range(first, last):
            offset = (step - epoch * steps_per_epoch) * global_batch
            for i in order[offset:offset + global_batch]:
                row = rows[i]
                cols["step"].append(step)
                cols["clip"].append(int(i))
                cols["path"].append(row.path)
                cols["start_s"].append(row.start_s)
                cols["end_s"].append(row.end_s)
                cols["caption"].append(row.captions[int(choice[i] * len(row.captions))])
                cols["sample_seed"].append(_mix(seed, epoch, int(i)))
                if sampling is not None:
                    cols["sampling"].append(int(sampling[i]))
    table = pa.table({
        "step": pa.array(cols["step"], pa.int64()), "clip": pa.array(cols["clip"], pa.int64()), "path": pa.array(cols["path"], pa.string()),
        "start_s": pa.array(cols["start_s"], pa.float64()), "end_s": pa.array(cols["end_s"], pa.float64()),
        "caption": pa.array(cols["caption"], pa.string()),
        "sample_seed": pa.array(cols["sample_seed"], pa.int64()),
    })
    if samplings > 0:
        table = table.append_column("sampling", pa.array(cols["sampling"], pa.int32()))
    return table
