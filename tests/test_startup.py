"""Decode actors start without importing open_clip's models: the train spec names open_clip's
SimpleTokenizer and the actor loads only ``open_clip/tokenizer.py``; the ids, and so the batches, are
those of ``open_clip.get_tokenizer`` (what every actor built before)."""

import dataclasses
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import open_clip
import pytest

import raytrain
from raytrain.config import Config, apply_overrides
from raytrain.data.decode_clips import DecodeClips
from raytrain.data.spec import DecodeSpec
from raytrain.data.tokens import CaptionTokenizer, open_clip_tokenizer_module, simple_tokenizer_kwargs
from raytrain.model.clip_video import get_tokenizer

CAPTIONS = ["A red ball rolls LEFT", "two cats, one dog!", "Ünïcode &amp; café — naïve",
            "  spaces\tand\nnewlines ", " ".join(["very long"] * 40), "x"]


class _Decoder:
    name = "fake"

    def decode(self, path, num_frames, size, train, rng=None, start_s=None, end_s=None):
        return np.full((num_frames, size, size, 3), (len(path) + int(rng.integers(100))) % 256, np.uint8)


def _train_batch(n):
    return {"path": np.asarray([f"{'v' * (i + 1)}.mp4" for i in range(n)], object), "clip": np.arange(n),
            "start_s": np.full(n, np.nan), "end_s": np.full(n, np.nan), "sampling": np.zeros(n, np.int32),
            "caption": np.asarray(CAPTIONS[:n], object), "sample_seed": np.arange(5, 5 + n)}


@pytest.mark.parametrize("arch, max_words", [("RT-Micro-ViT", 16), ("RT-Tiny-ViT", 32), ("ViT-B-32", 77),
                                             ("RN50", 24)])
def test_the_light_tokenizer_gives_open_clips_ids(arch, max_words):
    simple = simple_tokenizer_kwargs(arch, max_words)
    assert simple == (("context_length", max_words),)
    want = get_tokenizer(arch, max_words)(CAPTIONS).numpy()
    got = CaptionTokenizer(arch, max_words, simple)(CAPTIONS)
    assert got.dtype == np.int64 and got.shape == (len(CAPTIONS), max_words)
    assert np.array_equal(got, want)


def test_a_model_configs_tokenizer_kwargs_reach_the_light_tokenizer(tmp_path):
    cfg = json.loads((Path(raytrain.__file__).parent / "model/configs/RT-Micro-ViT.json").read_text())
    cfg["text_cfg"]["tokenizer_kwargs"] = {"clean": "whitespace"}  # keeps upper case: other ids
    (tmp_path / "RT-Cased-ViT.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(tmp_path)
    simple = simple_tokenizer_kwargs("RT-Cased-ViT", 16)
    assert simple == (("context_length", 16), ("clean", "whitespace"))
    want = get_tokenizer("RT-Cased-ViT", 16)(CAPTIONS).numpy()
    assert np.array_equal(CaptionTokenizer("RT-Cased-ViT", 16, simple)(CAPTIONS), want)
    assert not np.array_equal(want, get_tokenizer("RT-Micro-ViT", 16)(CAPTIONS).numpy())


def test_other_tokenizers_go_through_open_clip():
    assert simple_tokenizer_kwargs("ViT-B-16-SigLIP", 64) is None
    assert simple_tokenizer_kwargs("ViT-L-14-CLIPA", 32) is None  # hf_tokenizer_name: bert-base-uncased
    assert simple_tokenizer_kwargs("hf-hub:org/model", 32) is None


def test_the_decode_udf_makes_the_batch_it_made_with_open_clips_tokenizer():
    cfg = apply_overrides(Config(), ["model.arch=RT-Micro-ViT", "data.num_frames=2", "data.max_words=16"])
    spec = DecodeSpec.from_config(cfg, 8, train=True, mask_columns=("mask_high", "mask_low", "mask_tube"))
    assert spec.simple_tokenizer == (("context_length", 16),)
    assert DecodeSpec.from_config(cfg, 8, train=False).simple_tokenizer is None  # eval: no text
    before = DecodeClips(dataclasses.replace(spec, simple_tokenizer=None), decoder=_Decoder())(_train_batch(6))
    after = DecodeClips(spec, decoder=_Decoder())(_train_batch(6))
    assert list(after) == list(before) and "tokens" in after
    assert all(np.array_equal(after[k], before[k]) and after[k].dtype == before[k].dtype for k in before)


def test_a_decode_actor_imports_no_model_code(tmp_path):
    """What an actor does: unpickle the driver's spec, import the UDF's module, build it, run a batch;
    no open_clip package, torchvision, timm, raytrain.model or raytrain.methods gets imported."""
    cfg = apply_overrides(Config(), ["model.arch=RT-Tiny-ViT", "data.num_frames=2", "data.max_words=8"])
    spec_file = tmp_path / "spec.pkl"
    spec_file.write_bytes(pickle.dumps(DecodeSpec.from_config(cfg, 8, train=True)))
    want = get_tokenizer("RT-Tiny-ViT", 8)(["a red ball"]).numpy().tolist()
    code = f"""
import pickle, sys
import numpy as np
from raytrain.data.decode_clips import DecodeClips
class D:
    name = "fake"
    def decode(self, path, n, size, train, rng=None, start_s=None, end_s=None):
        return np.zeros((n, size, size, 3), np.uint8)
spec = pickle.loads(open({str(spec_file)!r}, "rb").read())
out = DecodeClips(spec, decoder=D())({{"path": np.array(["a.mp4"], object), "clip": np.zeros(1, np.int64),
    "start_s": np.full(1, np.nan), "end_s": np.full(1, np.nan), "caption": np.array(["a red ball"], object),
    "sample_seed": np.zeros(1, np.int64)}})
print(out["tokens"].tolist())
print(sorted(m for m in sys.modules if m.split(".")[0] in ("open_clip", "torchvision", "timm")
             or m.startswith(("raytrain.model", "raytrain.methods"))))
"""
    env = {**os.environ, "PYTHONPATH": str(Path(raytrain.__file__).parents[1])}
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    tokens, modules = out.stdout.strip().splitlines()
    assert tokens == str(want)
    assert modules == "[]"


def test_the_light_module_is_open_clips_own_file():
    module = open_clip_tokenizer_module()  # open_clip is imported here: its own module is returned
    assert module is open_clip.tokenizer
    assert Path(module.__file__).resolve() == Path(open_clip.tokenizer.__file__).resolve()


@pytest.mark.ray
def test_the_plans_dataset_holds_its_blocks_in_order(ray_session):
    """``_table_dataset`` (blocks and their metadata made on the driver): the same rows, in order, in
    the blocks ``from_arrow`` made before."""
    import pyarrow as pa

    from raytrain.data.pipeline import _table_dataset

    table = pa.table({"step": pa.array(range(30), pa.int64()), "caption": pa.array([f"c{i}" for i in range(30)]),
                      "end_s": pa.array([None, 2.5] * 15, pa.float64())})
    ds = _table_dataset(table, 4)
    assert ds.num_blocks() == 8 and ds.count() == 30 and ds.schema().names == table.column_names
    assert ds.take_all() == table.to_pylist()
    assert [len(b) for b in ds.iter_batches(batch_size=None, batch_format="pyarrow")] == [4] * 7 + [2]
