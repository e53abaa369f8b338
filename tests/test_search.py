"""Search index (raytrain/search): pure parts without Ray, and one Ray check that search over an
index of the test split reproduces ``raytrain eval``'s text→video recalls."""

from pathlib import Path

import numpy as np
import pytest

from raytrain.data.manifest import ClipRow
from raytrain.search import index_files as files
from raytrain.search.query import exact_top_k, recall_at


def _identity(weights="a" * 64, dim=4):
    return files.index_identity("/ck", weights, "RT-Micro-ViT", 3, dim)


def _records(keys, dim=4):
    rng = np.random.default_rng(len(keys))
    return {"key": keys, "video_id": keys, "path": [f"/v/{k}.mp4" for k in keys], "start_s": [None] * len(keys),
            "end_s": [None] * len(keys), "captions": [["a cap"]] * len(keys), "split": ["test"] * len(keys),
            "embedding": list(rng.standard_normal((len(keys), dim)).astype(np.float32)),
            "thumbnail": [b"png"] * len(keys)}


def test_resume_embeds_only_missing_clips_and_shards_round_trip(tmp_path):
    files.open_index(tmp_path, _identity())
    files.write_shard(tmp_path, _records(["v0", "v1"]), 4)
    files.write_shard(tmp_path, _records(["v2"]), 4)
    rows = [ClipRow("v0", "/v/v0.mp4", ("c",), "test"), ClipRow("v3", "/v/v3.mp4", ("c",), "test"),
            ClipRow("v1", "/v/v1.mp4", ("c",), "test"), ClipRow("v3", "/v/v3.mp4", ("c",), "test", 1.0, 2.0)]
    todo = files.missing_rows(rows, files.indexed_keys(tmp_path))
    assert [files.clip_key(r.video_id, r.start_s, r.end_s) for r in todo] == ["v3", "v3@1.0-2.0"]
    table = files.read_index(tmp_path)
    assert table.column("key").to_pylist() == ["v0", "v1", "v2"]
    assert files.embedding_matrix(table).shape == (3, 4)
    assert [p.name for p in files.shard_paths(tmp_path)] == ["shard-00000.parquet", "shard-00001.parquet"]


def test_an_index_refuses_another_checkpoint_or_width(tmp_path):
    files.open_index(tmp_path, _identity())
    files.open_index(tmp_path, _identity())  # the same model: fine (a resume)
    with pytest.raises(files.IndexMismatchError, match="weights_sha256"):
        files.open_index(tmp_path, _identity(weights="b" * 64))
    with pytest.raises(files.IndexMismatchError, match="dim"):
        files.open_index(tmp_path, _identity(dim=8))
    with pytest.raises(FileNotFoundError, match="not a search index"):
        files.read_identity(tmp_path / "nothing")


def test_hash_files_changes_with_the_bytes(tmp_path):
    (tmp_path / "w").write_bytes(b"abc")
    first = files.hash_files([tmp_path / "w"])
    (tmp_path / "w").write_bytes(b"abd")
    assert files.hash_files([tmp_path / "w"]) != first


def test_thumbnail_strip_is_a_png_of_evenly_spaced_frames():
    from io import BytesIO

    from PIL import Image

    frames = np.zeros((12, 32, 48, 3), np.uint8)
    frames[:, :, :, 0] = np.arange(12)[:, None, None] * 20
    image = np.asarray(Image.open(BytesIO(files.thumbnail_strip(frames, count=4, height=16))))
    assert image.shape == (16, 4 * 24, 3)
    assert [int(image[0, 24 * i + 5, 0]) for i in range(4)] == [0, 80, 140, 220]  # frames 0, 4, 7, 11
    with pytest.raises(ValueError):
        files.thumbnail_strip(np.zeros((3, 8, 8), np.uint8))


def test_exact_top_k_matches_a_full_sort_across_blocks():
    rng = np.random.default_rng(0)
    q, c = rng.standard_normal((37, 8)), rng.standard_normal((101, 8))
    scores, idx = exact_top_k(q, c, 5, block=10)
    full = np.argsort(-(q @ c.T), axis=1)[:, :5]
    assert np.array_equal(idx, full)
    assert np.allclose(scores, np.take_along_axis(q @ c.T, full, axis=1), atol=1e-5)
    assert recall_at(idx, full) == 1.0 and recall_at(idx[:, ::-1][:, :1], full[:, :1]) < 1.0


def _untrained_checkpoint(synth_dir, tmp_path):
    from tiny import tiny_overrides

    from raytrain.config import Config, apply_overrides
    from raytrain.methods import build_objective
    from raytrain.train.state import save_training_state, seed_everything

    cfg = apply_overrides(Config(), tiny_overrides(synth_dir))
    seed_everything(0)
    objective = build_objective(cfg)
    import torch

    opt = torch.optim.SGD(objective.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    return save_training_state(tmp_path / "checkpoint_000000", cfg, objective, opt, sched, 0, [])


@pytest.mark.ray
@pytest.mark.timeout(300)
def test_search_over_the_test_split_equals_eval_t2v_recalls(ray_session, synth_dir, tmp_path):
    from raytrain.cli import evaluate_checkpoint
    from raytrain.data.manifest import load_manifest
    from raytrain.search.build import build_index
    from raytrain.search.query import search

    ckpt = _untrained_checkpoint(synth_dir, tmp_path)
    manifest = str(Path(synth_dir) / "manifest.parquet")
    out = str(tmp_path / "index")
    first = build_index(str(ckpt), [], manifest, "test", out, shard_size=5)
    rows = load_manifest(manifest, split="test")
    assert first["embedded"] == len(rows) and len(files.shard_paths(out)) == -(-len(rows) // 5)
    assert build_index(str(ckpt), [], manifest, "test", out)["embedded"] == 0  # resumable: nothing missing
    texts = [c for r in rows for c in r.captions]
    owner = [r.video_id for r in rows for _ in r.captions]
    results = search(out, texts, k=5)
    r1 = np.mean([hits[0]["video_id"] == o for hits, o in zip(results, owner)]) * 100
    r5 = np.mean([o in {h["video_id"] for h in hits} for hits, o in zip(results, owner)]) * 100
    metrics = evaluate_checkpoint(str(ckpt), [], str(tmp_path / "m.json"))["metrics"]
    print(f"search R@1 {r1:.2f} R@5 {r5:.2f} | eval t2v_R1 {metrics['t2v_R1']:.2f} t2v_R5 {metrics['t2v_R5']:.2f}"
          f" ({len(rows)} clips, {len(texts)} captions)")
    assert (r1, r5) == pytest.approx((metrics["t2v_R1"], metrics["t2v_R5"]), abs=1e-9)
    assert results[0][0]["path"].endswith(".mp4") and results[0][0]["captions"]


def test_zero_shot_weights_file_loads_for_search(tmp_path):
    import torch

    from raytrain.config import Config, apply_overrides
    from raytrain.model.clip_video import build_model
    from raytrain.search.model import load_search_model
    from raytrain.search.query import embed_queries

    torch.manual_seed(1)
    clip = build_model(apply_overrides(Config(), ["model.arch=RT-Micro-ViT"]).model).clip
    torch.save(clip.state_dict(), tmp_path / "weights.pt")
    loaded = load_search_model(str(tmp_path / "weights.pt"), ["model.arch=RT-Micro-ViT", "data.max_words=16"])
    assert loaded.weights_hash == files.hash_files([tmp_path / "weights.pt"])
    assert torch.equal(loaded.model.clip.visual.conv1.weight, clip.visual.conv1.weight)  # the file's weights
    emb = embed_queries(loaded, ["a red circle", "a blue square"])
    assert emb.shape[0] == 2 and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    with pytest.raises(FileNotFoundError):
        load_search_model(str(tmp_path / "nope"))
    # search/serve reload it from index.json alone, with the recorded arch; changed weights are refused
    from raytrain.search.model import load_index_model

    identity = files.index_identity(loaded.checkpoint, loaded.weights_hash, "RT-Micro-ViT", 12, emb.shape[1])
    assert load_index_model(identity).cfg.model.arch == "RT-Micro-ViT"
    torch.save({k: v + 1 for k, v in clip.state_dict().items()}, tmp_path / "weights.pt")
    with pytest.raises(files.IndexMismatchError, match="weights differ"):
        load_index_model(identity)
