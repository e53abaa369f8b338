"""Retrieval examples (``eval.retrieval_examples``): the captions picked, their top clips as the
evaluation scores them, the picture and the table, and what rank 0 writes to TensorBoard."""

import numpy as np
import pytest
import torch

from raytrain.config import Config, apply_overrides
from raytrain.eval.examples import (
    MISSED,
    RIGHT,
    WRONG,
    RetrievalExamples,
    example_queries,
    example_sheet,
    top_k,
)


def test_queries_spread_evenly_and_top_k_breaks_ties_by_index():
    assert example_queries(10, 4) == [0, 3, 6, 9] and example_queries(3, 8) == [0, 1, 2]
    assert example_queries(0, 4) == [] == example_queries(5, 0)
    clips, scores = top_k(np.array([0.1, 0.5, 0.5, -1.0, 0.9]), 3)
    assert clips.tolist() == [4, 1, 2] and scores.tolist() == [0.9, 0.5, 0.5]


def test_the_table_names_the_right_clips_place_and_the_top_scores():
    ex = RetrievalExamples([0, 2], k=2)
    ex.add(0, np.array([0.2, 0.9, 0.1]))  # caption 0 belongs to clip 1: first
    ex.add(2, np.array([0.8, 0.1, 0.3]))  # caption 2 belongs to clip 1: not in the top 2
    table = ex.table(["a red circle", "x", "a blue star"], [1, 0, 1], ["v0", "v1", "v2"]).splitlines()
    assert table[2] == "| a red circle | v1 #1 | v1 (0.900), v0 (0.200) |"
    assert table[3] == "| a blue star | v1 not in top 2 | v0 (0.800), v2 (0.300) |"


def test_the_sheet_frames_the_right_clip_green_and_marks_a_miss():
    strips = [np.full((8, 24, 3), v, np.uint8) for v in (10, 20, 30)]
    sheet = example_sheet("a caption", strips, [False, True, False], border=2, gap=4)
    assert sheet.shape == (14 + 12, 3 * 28 + 2 * 4, 3) and sheet.dtype == np.uint8
    assert tuple(sheet[14, 0]) == WRONG and tuple(sheet[14, 32]) == RIGHT and tuple(sheet[14 + 2, 34]) == (20, 20, 20)
    assert (sheet[:14] < 128).any()  # the caption is written
    missed = example_sheet("a caption", strips, [False] * 3, border=2, gap=4)
    assert missed.shape[0] == sheet.shape[0] + 10 and tuple(missed[-1, 0]) == MISSED
    with pytest.raises(ValueError, match="one 'right' flag per strip"):
        example_sheet("c", strips, [True])


def test_the_evaluation_fills_the_examples_with_the_models_own_ranking():
    from raytrain.eval.retrieval import embed_texts, embed_videos, evaluate_model
    from raytrain.model.clip_video import build_model, get_tokenizer

    torch.manual_seed(0)
    cfg = apply_overrides(Config(), ["model.arch=RT-Micro-ViT", "model.temporal=meanP"])
    model = build_model(cfg.model).eval()
    size = model.clip.visual.image_size
    size = size[0] if isinstance(size, tuple) else size
    frames = torch.randint(0, 256, (6, 2, size, size, 3), dtype=torch.uint8)
    batches = [{"frames": frames[:4], "video_index": torch.arange(4)},
               {"frames": frames[4:], "video_index": torch.arange(4, 6)}]
    texts = [f"caption number {i}" for i in range(8)]
    owner = np.array([0, 1, 2, 3, 4, 5, 0, 1])
    tok = get_tokenizer(cfg.model.arch, 16)
    ex = RetrievalExamples(example_queries(len(texts), 3), k=4)
    evaluate_model(model, batches, texts, owner, 6, tok, "cpu", examples=ex)
    with torch.no_grad():
        sim = (embed_texts(model, tok, texts, 8, "cpu") @ embed_videos(model, batches, 6, "cpu").T).numpy()
    assert sorted(ex.found) == [0, 4, 7]
    for q, (clips, scores) in ex.found.items():
        assert clips.tolist() == np.argsort(-sim[q], kind="stable")[:4].tolist()
        np.testing.assert_allclose(scores, sim[q][clips], rtol=1e-5)


class _Writer:
    def __init__(self):
        self.images, self.texts = [], []

    def add_image(self, tag, img, step, dataformats):
        self.images.append((tag, img.shape, step, dataformats))

    def add_text(self, tag, text, step):
        self.texts.append((tag, text, step))


def test_rank_0_writes_one_picture_per_caption_and_the_table(synth_dir):
    from raytrain.data.manifest import load_manifest
    from raytrain.data.pipeline import eval_texts
    from raytrain.train.job import TrainJob
    from raytrain.train.retrieval_pictures import THUMB_FRAMES, THUMB_SIZE, RetrievalPictures

    rows = load_manifest(synth_dir / "manifest.parquet", split="test")
    texts, owner = eval_texts(rows)
    cfg = apply_overrides(Config(), ["eval.retrieval_examples=2", "eval.retrieval_examples_top_k=3"])
    job = TrainJob({}, 0, 0, eval_texts=texts, eval_text_to_video=owner.tolist(), num_eval_clips=len(rows),
                   eval_clips=[(r.video_id, r.path, r.start_s, r.end_s) for r in rows])
    pictures = RetrievalPictures(cfg, job)
    ex = pictures.collector()
    assert ex.queries == [0, len(texts) - 1] and ex.k == 3
    for q in ex.queries:  # caption q's own clip second
        scores = np.zeros(len(rows))
        scores[(owner[q] + 1) % len(rows)], scores[owner[q]] = 1.0, 0.5
        ex.add(q, scores)
    writer = _Writer()
    pictures.log(ex, writer, step=7)
    strip_w = THUMB_FRAMES * THUMB_SIZE + 6
    assert [(t, s[1], step) for t, s, step, _ in writer.images] == [
        ("retrieval/caption0", 3 * strip_w + 8, 7), ("retrieval/caption1", 3 * strip_w + 8, 7)]
    (tag, table, step), = writer.texts
    assert tag == "retrieval/examples" and step == 7 and table.count("\n") == 3 and texts[0] in table
    assert f"{rows[owner[0]].video_id} #2" in table
    off = RetrievalPictures(apply_overrides(cfg, ["eval.retrieval_examples=0"]), job)
    assert off.collector() is None
