import numpy as np
import pytest

from raytrain.data.manifest import ClipRow
from raytrain.data.plan import build_plan, plan_steps


def rows(n):
    return [ClipRow(f"v{i}", f"/d/v{i}.mp4", tuple(f"cap {i} {j}" for j in range(3)), "train") for i in range(n)]


def test_plan_steps():
    assert plan_steps(48, 2, 4, 3) == (6, 18)
    assert plan_steps(50, 2, 4, 3, max_steps=10) == (6, 10)
    with pytest.raises(ValueError, match="fewer than one global batch"):
        plan_steps(7, 2, 4, 1)


def test_each_epoch_visits_each_clip_at_most_once_and_shuffles():
    plan = build_plan(rows(10), global_batch=4, seed=0, start_step=0, end_step=4).to_pydict()
    assert plan["step"] == [s for s in range(4) for _ in range(4)]
    epoch0, epoch1 = plan["path"][:8], plan["path"][8:]
    assert len(set(epoch0)) == 8 and len(set(epoch1)) == 8
    assert epoch0 != epoch1  # a new order each epoch
    for path, caption in zip(plan["path"], plan["caption"]):
        assert caption.startswith(f"cap {path.split('/v')[1].split('.')[0]} ")


def test_deterministic_and_resume_slice_equals_tail():
    full = build_plan(rows(10), 4, seed=5, start_step=0, end_step=7)
    again = build_plan(rows(10), 4, seed=5, start_step=0, end_step=7)
    assert full.equals(again)
    tail = build_plan(rows(10), 4, seed=5, start_step=3, end_step=7)
    assert tail.equals(full.slice(3 * 4))
    other = build_plan(rows(10), 4, seed=6, start_step=0, end_step=7)
    assert not other.equals(full)


def test_captions_and_seeds_vary_across_epochs():
    plan = build_plan(rows(4), 4, seed=0, start_step=0, end_step=30).to_pydict()
    by_clip = {}
    for path, caption, seed in zip(plan["path"], plan["caption"], plan["sample_seed"]):
        by_clip.setdefault(path, []).append((caption, seed))
    for seen in by_clip.values():
        assert len({c for c, _ in seen}) == 3  # every caption gets drawn over 30 epochs
        assert len({s for _, s in seen}) == 30  # a fresh sampling seed each epoch
    assert np.all(np.asarray(plan["sample_seed"]) >= 0)


def test_bad_ranges():
    with pytest.raises(ValueError):
        build_plan(rows(3), 4, 0, 0, 1)
    with pytest.raises(ValueError):
        build_plan(rows(8), 4, 0, 3, 2)


def test_cached_samplings_cycle_through_every_sampling():
    from raytrain.data.plan import epoch_samplings

    k = 4
    per_epoch = np.stack([epoch_samplings(7, e, 50, k) for e in range(k)])
    assert ((per_epoch >= 0) & (per_epoch < k)).all()
    assert all(sorted(per_epoch[:, c]) == list(range(k)) for c in range(50))  # each clip: all of them
    assert len(set(per_epoch[0])) > 1  # an epoch mixes samplings across clips
    assert np.array_equal(epoch_samplings(7, 2, 50, k), per_epoch[2])  # deterministic
    clips = rows(20)
    plain = build_plan(clips, 4, seed=1, start_step=0, end_step=10)
    cached = build_plan(clips, 4, seed=1, start_step=0, end_step=10, samplings=3)
    assert "sampling" not in plain.column_names
    assert cached.drop_columns(["sampling"]).equals(plain)  # the cache changes nothing else
    samp, clip = cached.column("sampling").to_numpy(), cached.column("clip").to_numpy()
    step = cached.column("step").to_numpy()
    assert all(samp[i] == epoch_samplings(1, step[i] // 5, 20, 3)[clip[i]] for i in range(len(samp)))


def pair_rows(counts):
    return [ClipRow(f"v{i}", f"/d/v{i}.mp4", tuple(f"cap {i} {j}" for j in range(n)), "train")
            for i, n in enumerate(counts)]


def test_caption_pair_epoch_visits_every_pair_once():
    from raytrain.data.plan import epoch_items, num_epoch_items

    clips = pair_rows([3, 1, 4, 2, 2])  # 12 pairs
    assert num_epoch_items(clips, "caption_pair") == 12 and num_epoch_items(clips, "clip") == 5
    clip_idx, cap_idx = epoch_items(clips, "caption_pair")
    assert list(zip(clip_idx.tolist(), cap_idx.tolist())) == [(i, j) for i, n in enumerate([3, 1, 4, 2, 2])
                                                                for j in range(n)]
    plan = build_plan(clips, global_batch=4, seed=3, start_step=0, end_step=6, epoch_unit="caption_pair")
    d = plan.to_pydict()
    for epoch in (0, 1):  # 3 steps per epoch: every pair exactly once, in a new order
        part = slice(epoch * 12, (epoch + 1) * 12)
        pairs = list(zip(d["clip"][part], d["caption_index"][part]))
        assert sorted(pairs) == sorted(zip(clip_idx.tolist(), cap_idx.tolist()))
    assert d["clip"][:12] != d["clip"][12:]
    for clip, j, caption, path in zip(d["clip"], d["caption_index"], d["caption"], d["path"]):
        assert caption == f"cap {clip} {j}" and path == f"/d/v{clip}.mp4"  # the pair's caption, carried through
    assert len(set(zip(d["clip"][:12], d["sample_seed"][:12]))) == 12  # each pair: its own frame offsets
    # resume: the tail of the plan is the plan from that step
    tail = build_plan(clips, 4, seed=3, start_step=4, end_step=6, epoch_unit="caption_pair")
    assert tail.equals(plan.slice(4 * 4))
    with pytest.raises(ValueError, match="epoch_unit"):
        build_plan(clips, 4, 3, 0, 1, epoch_unit="video")


def test_caption_pair_plan_keeps_the_clip_plan_unchanged_by_default():
    clips = rows(10)
    default = build_plan(clips, 4, seed=5, start_step=0, end_step=7)
    assert default.equals(build_plan(clips, 4, seed=5, start_step=0, end_step=7, epoch_unit="clip"))
    d = default.to_pydict()
    assert all(c == f"cap {clip} {j}" for c, clip, j in zip(d["caption"], d["clip"], d["caption_index"]))


def test_caption_pair_step_counts_msrvtt_9k():
    from raytrain.data.plan import num_epoch_items

    msrvtt = [ClipRow(f"video{i}", f"/d/{i}.mp4", tuple("c" for _ in range(20)), "train") for i in range(9000)]
    pairs = num_epoch_items(msrvtt, "caption_pair")
    assert pairs == 180_000
    assert plan_steps(pairs, 4, 32, 5) == (1406, 7030)  # CLIP4Clip: batch 128 on 4 GPUs, 5 epochs
    assert plan_steps(num_epoch_items(msrvtt, "clip"), 4, 32, 5) == (70, 350)  # one caption per clip: 20x fewer
    assert plan_steps(pairs, 1, 128, 5) == (1406, 7030)  # the same global batch on one GPU


def test_caption_pairs_with_frame_cache_rotate_samplings_per_pair():
    clips = pair_rows([3] * 4)
    plan = build_plan(clips, 4, seed=1, start_step=0, end_step=3, samplings=3, epoch_unit="caption_pair").to_pydict()
    by_clip = {}
    for clip, s in zip(plan["clip"], plan["sampling"]):
        by_clip.setdefault(clip, set()).add(s)
    assert all(s == {0, 1, 2} for s in by_clip.values())  # one epoch: a clip's 3 pairs use its 3 samplings
