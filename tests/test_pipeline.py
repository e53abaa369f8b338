"""Tier 2: the Ray Data graph on a few generated clips."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from raytrain.data.batch import train_batch_dtypes
from raytrain.data.manifest import load_manifest
from raytrain.data.pipeline import eval_dataset, eval_texts, train_dataset
from raytrain.data.plan import build_plan

pytestmark = pytest.mark.ray


def test_train_dataset_yields_uint8_frames_and_tokens(ray_session, tiny_config):
    cfg = tiny_config
    rows = load_manifest(cfg.data.manifest, split="train")
    # 48 clips, global batch 8 (4 x 2 workers): 6 steps per epoch; steps [2, 9) = 7 steps = 56 clips.
    batches = list(train_dataset(cfg, rows, image_size=32, start_step=2, end_step=9).iter_torch_batches(
        batch_size=8, dtypes=train_batch_dtypes(cfg)))
    assert set(batches[0]) == {"frames", "tokens", "fallback_decoded"}  # data.decoder=auto: counted fallbacks
    assert not any(b["fallback_decoded"].any() for b in batches)  # decord reads every SynthVTT clip
    frames = torch.cat([b["frames"] for b in batches])
    tokens = torch.cat([b["tokens"] for b in batches])
    assert frames.shape == (56, 3, 32, 32, 3) and frames.dtype == torch.uint8
    assert tokens.shape == (56, 16) and tokens.dtype == torch.int64
    assert frames.float().std() > 5  # real pictures, not zeros
    # Each token row is a CLIP-tokenised caption: start token first, end token present.
    assert (tokens[:, 0] == 49406).all() and (tokens == 49407).any(dim=1).all()


def test_eval_dataset_covers_each_clip_once_in_order(ray_session, tiny_config):
    cfg = tiny_config
    rows = load_manifest(cfg.data.manifest, split="test")
    idx, frames = [], []
    for b in eval_dataset(cfg, rows, image_size=32).iter_batches(batch_size=5, batch_format="numpy"):
        idx.extend(b["video_index"].tolist())
        frames.append(b["frames"])
    assert sorted(idx) == list(range(len(rows)))
    # Eval sampling is deterministic (segment centres): a second pass gives identical frames.
    again = {int(i): f for b in eval_dataset(cfg, rows, image_size=32).iter_batches(batch_size=5, batch_format="numpy")
             for i, f in zip(b["video_index"], b["frames"])}
    first = dict(zip(idx, np.concatenate(frames)))
    assert all(np.array_equal(first[i], again[i]) for i in first)
    texts, owner = eval_texts(rows)
    assert len(texts) == sum(len(r.captions) for r in rows) and owner.max() == len(rows) - 1


def test_corrupt_clip_error_names_the_file_and_skip_flags_the_black_stand_in(ray_session, tiny_config, tmp_path):
    from ray.exceptions import UserCodeException

    from raytrain.config import apply_overrides
    from raytrain.data.batch import eval_batch_dtypes
    from raytrain.data.manifest import write_manifest

    src = load_manifest(tiny_config.data.manifest, split="test")[:3]
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(Path(src[0].path).read_bytes()[:600])  # a truncated H.264 file
    rows = [{"video_id": r.video_id, "path": r.path, "captions": list(r.captions), "split": "test"} for r in src]
    rows[1]["path"] = str(bad)
    manifest = write_manifest(rows, tmp_path / "m.parquet")
    cfg = apply_overrides(tiny_config, [f"data.manifest={manifest}"])
    with pytest.raises(UserCodeException) as failed:
        list(eval_dataset(cfg, load_manifest(manifest), image_size=32).iter_batches(batch_size=3))
    # data.decoder=auto (the default): the error names the file and what each decoder said
    assert re.search(r"VideoDecodeError: cannot decode '[^']*broken\.mp4' with auto: decord: .+; pyav: ",
                     str(failed.value))
    # data.on_bad_video=skip: every clip stays (the similarity matrix is fixed), the bad one black and flagged.
    skip = apply_overrides(cfg, ["data.on_bad_video=skip"])
    batches = list(eval_dataset(skip, load_manifest(manifest), image_size=32).iter_torch_batches(
        batch_size=3, dtypes=eval_batch_dtypes(skip)))
    flagged = {int(i): bool(b) for batch in batches for i, b in zip(batch["video_index"], batch["bad_video"])}
    frames = {int(i): f for batch in batches for i, f in zip(batch["video_index"], batch["frames"])}
    assert flagged == {0: False, 1: True, 2: False}
    assert not frames[1].any() and frames[0].float().std() > 5


def test_random_masks_from_the_data_workers(ray_session, tiny_config):
    from raytrain.config import apply_overrides
    from raytrain.data.batch import train_batch_dtypes
    from raytrain.methods import data_columns

    cfg = apply_overrides(tiny_config, ["method.name=mascot", "mask.strategy=random",
                                        "mask.high_ratio=0.25", "mask.low_ratio=0.5"])
    rows = load_manifest(cfg.data.manifest, split="train")
    batch = next(iter(train_dataset(cfg, rows, image_size=32, start_step=0, end_step=1, mask_columns=data_columns(cfg)).iter_torch_batches(
        batch_size=8, dtypes=train_batch_dtypes(cfg, data_columns(cfg)))))
    assert batch["mask_high"].shape == (8, 3, 16) and batch["mask_high"].dtype == torch.bool
    assert (batch["mask_high"].sum(-1) == 4).all() and (batch["mask_low"].sum(-1) == 8).all()


def test_tube_masks_from_the_data_workers_reproduce(ray_session, tiny_config):
    from raytrain.config import apply_overrides
    from raytrain.data.batch import train_batch_dtypes
    from raytrain.methods import data_columns

    cfg = apply_overrides(tiny_config, ["method.name=miles", "method.miles.mask_ratio=0.5"])
    assert set(train_batch_dtypes(cfg, data_columns(cfg))) == {"frames", "tokens", "mask_tube", "fallback_decoded"}
    rows = load_manifest(cfg.data.manifest, split="train")

    def first_batch():
        return next(iter(train_dataset(cfg, rows, image_size=32, start_step=0, end_step=1, mask_columns=data_columns(cfg)).iter_torch_batches(
            batch_size=8, dtypes=train_batch_dtypes(cfg, data_columns(cfg)))))

    batch = first_batch()
    assert batch["mask_tube"].shape == (8, 16) and batch["mask_tube"].dtype == torch.bool
    assert (batch["mask_tube"].sum(-1) == 8).all()
    def by_clip(b):  # rows keyed by their content, whatever order the actors return them in
        return {(tuple(t.tolist()), int(f.long().sum())): m.tolist()
                for t, f, m in zip(b["tokens"], b["frames"], b["mask_tube"])}

    assert by_clip(first_batch()) == by_clip(batch)  # seeded from each row's sample_seed


def test_frame_cache_serves_later_epochs_and_evaluations(plan_order, tiny_config):
    from raytrain.config import apply_overrides
    from raytrain.data import frame_cache
    from raytrain.data.decode import make_decoder
    from raytrain.data.pipeline import prepare_cache

    cfg = apply_overrides(tiny_config, ["data.cache=frames", "data.cache_samplings=2"])
    rows = load_manifest(cfg.data.manifest, split="train")

    def epoch(first_step):  # 48 clips, global batch 8: 6 steps per epoch
        out = []
        for b in train_dataset(cfg, rows, image_size=32, start_step=first_step, end_step=first_step + 6) \
                .iter_batches(batch_size=8, batch_format="numpy"):
            out.extend(zip(b["frames"], b["cache_hit"]))
        return out

    plan = build_plan(rows, 8, cfg.train.seed, 0, 12, samplings=2)
    first, second = epoch(0), epoch(6)
    assert len(first) == len(second) == 48
    assert not any(hit for _, hit in first) and all(hit for _, hit in second)
    # Both epochs hold exactly the planned sampling of each clip, as the decoder makes it.
    decoder = make_decoder("decord")
    clips, samplings = plan.column("clip").to_numpy(), plan.column("sampling").to_numpy()
    for i in (0, 5, 47, 48, 60, 95):
        row = rows[clips[i]]
        want = decoder.decode_samplings(row.path, 3, 32, True, frame_cache.sampling_rngs(cfg.train.seed, clips[i], 2))
        got = (first + second)[i][0]
        assert np.array_equal(got, want[samplings[i]])
    # Epoch 1 read the other sampling of every clip: (almost always) other frames than epoch 0.
    by_clip = [{int(c): f for c, (f, _) in zip(clips[e * 48:(e + 1) * 48], part)} for e, part in enumerate((first, second))]
    assert sum(not np.array_equal(by_clip[0][c], by_clip[1][c]) for c in by_clip[0]) > 40

    test_rows = load_manifest(cfg.data.manifest, split="test")

    def evaluate():
        return {int(i): f for b in eval_dataset(cfg, test_rows, image_size=32).iter_batches(
            batch_size=5, batch_format="numpy") for i, f in zip(b["video_index"], b["frames"])}

    uncached = {int(i): f for b in eval_dataset(tiny_config, test_rows, image_size=32).iter_batches(
        batch_size=5, batch_format="numpy") for i, f in zip(b["video_index"], b["frames"])}
    once, twice = evaluate(), evaluate()
    cache = frame_cache.FrameCache(prepare_cache(cfg, test_rows, 32, train=False))
    assert all(np.array_equal(cache.get(i, 0), uncached[i]) for i in uncached)  # every clip cached
    assert all(np.array_equal(once[i], uncached[i]) and np.array_equal(twice[i], uncached[i]) for i in uncached)


def test_per_rank_datasets_hold_each_ranks_slice_in_plan_order(plan_order, tiny_config):
    from raytrain.config import apply_overrides
    from raytrain.data.decode import make_decoder
    from raytrain.data.pipeline import rank_dataset_name, train_datasets_per_rank

    cfg = apply_overrides(tiny_config, ["data.per_rank_plan=true", "data.decode_batch_size=3"])
    rows = load_manifest(cfg.data.manifest, split="train")
    plan = build_plan(rows, 8, cfg.train.seed, 1, 4)  # steps 1-3: 4 clips per rank per step
    clip = plan.column("clip").to_numpy().reshape(3, 2, 4)  # (step, rank, row)
    seed = plan.column("sample_seed").to_numpy().reshape(3, 2, 4)
    datasets = train_datasets_per_rank(cfg, rows, image_size=32, start_step=1, end_step=4)
    for rank in range(2):
        got = [f for b in datasets[rank_dataset_name(rank)].iter_batches(batch_size=4, batch_format="numpy")
               for f in b["frames"]]
        want = [make_decoder("decord").decode(rows[c].path, 3, 32, train=True, rng=np.random.default_rng(int(s)))
                for c, s in zip(clip[:, rank].ravel(), seed[:, rank].ravel())]
        assert len(got) == 12 and all(np.array_equal(a, b) for a, b in zip(got, want))  # its clips, in order


def test_cache_command_fills_both_splits_before_training(ray_session, tiny_config, tmp_path, capsys):
    from raytrain.cli import main
    from raytrain.config import apply_overrides, dump_config

    cfg = apply_overrides(tiny_config, ["data.cache=frames", "data.cache_samplings=2"])
    dump_config(cfg, tmp_path / "run.yaml")
    assert main(["cache", "--config", str(tmp_path / "run.yaml")]) == 0
    out = capsys.readouterr().out
    rows = load_manifest(cfg.data.manifest, split="train")
    assert f"train: {len(rows)} clips x 2 sampling(s): 0 cached before, {2 * len(rows)} now" in out
    assert "test: 12 clips x 1 sampling(s): 0 cached before, 12 now" in out
    # The run's very first epoch now reads every clip from the cache.
    hits = [h for b in train_dataset(cfg, rows, image_size=32, start_step=0, end_step=6).iter_batches(
        batch_size=8, batch_format="numpy") for h in b["cache_hit"]]
    assert len(hits) == 48 and all(hits)
    assert main(["cache", "--config", str(tmp_path / "run.yaml")]) == 0  # again: nothing new to do
    assert f"{2 * len(rows)} cached before, {2 * len(rows)} now" in capsys.readouterr().out
