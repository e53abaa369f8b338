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
