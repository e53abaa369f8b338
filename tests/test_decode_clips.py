"""The data path's pieces without Ray: the decode spec, the batch schema the UDF emits, the masks,
the read-through cache, substitution, and the count of eval clips replaced under ``skip``."""

import numpy as np
import pytest
import torch

from raytrain.config import Config, apply_overrides
from raytrain.data.batch import (
    FRAMES,
    assemble,
    eval_batch_dtypes,
    train_batch_dtypes,
)
from raytrain.data.clip_masks import clip_masks
from raytrain.data.decode import VideoDecodeError
from raytrain.data.decode_clips import DecodeClips
from raytrain.data.read_through import ReadThroughCache
from raytrain.data.reader import ClipReader
from raytrain.data.spec import DecodeSpec, MaskSpec
from raytrain.data.substitute import Substitutes

ARCH = "RT-Micro-ViT"  # 16 patches per frame (a 4x4 grid)


class _Decoder:
    """Frames filled with the path's length plus the sampling's first random draw; some paths fail."""

    name = "fake"

    def __init__(self, bad=()):
        self.bad, self.calls = set(bad), []

    def decode(self, path, num_frames, size, train, rng=None, start_s=None, end_s=None):
        self.calls.append(path)
        if path in self.bad:
            raise VideoDecodeError(path, self.name, "moov atom not found")
        shift = int(rng.integers(100)) if rng is not None else 0
        return np.full((num_frames, size, size, 3), (len(path) + shift) % 256, np.uint8)


def _cfg(*overrides):
    return apply_overrides(Config(), [f"model.arch={ARCH}", "data.num_frames=2", "data.max_words=16", *overrides])


def _train_batch(paths, first_clip=10):
    n = len(paths)
    return {"path": np.asarray(paths, dtype=object), "clip": np.arange(first_clip, first_clip + n),
            "start_s": np.full(n, np.nan), "end_s": np.full(n, np.nan), "sampling": np.zeros(n, np.int32),
            "caption": np.asarray([f"caption {i}" for i in range(n)], dtype=object),
            "sample_seed": np.arange(100, 100 + n)}


def _eval_batch(paths):
    n = len(paths)
    return {"path": np.asarray(paths, dtype=object), "video_index": np.arange(n),
            "start_s": np.full(n, np.nan), "end_s": np.full(n, np.nan)}


def test_the_spec_follows_the_config_and_its_columns_are_the_batch_schema():
    cfg = _cfg("data.on_bad_video=skip", "data.decode_timeout_s=7", "data.cache=frames", "data.cache_samplings=3",
               "train.seed=9", "mask.high_ratio=0.25", "method.miles.mask_ratio=0.75")
    masks = ("mask_high", "mask_low", "mask_tube")
    spec = DecodeSpec.from_config(cfg, 32, train=True, mask_columns=masks, cache_location="/c")
    assert (spec.decoder, spec.num_frames, spec.image_size, spec.arch, spec.max_words) == ("auto", 2, 32, ARCH, 16)
    assert (spec.timeout_s, spec.cache_samplings, spec.seed, spec.skip_bad) == (7.0, 3, 9, True)
    assert spec.masks == MaskSpec(patches=16, high_ratio=0.25, low_ratio=cfg.mask.low_ratio, tube_grid=4,
                                  tube_ratio=0.75, tube_block=(cfg.method.miles.block_min, cfg.method.miles.block_max))
    assert {c.name: c.torch for c in spec.columns} == train_batch_dtypes(cfg, masks)
    evaluation = DecodeSpec.from_config(cfg, 32, train=False, mask_columns=masks, cache_location="/e")
    assert evaluation.cache_samplings == 1 and evaluation.masks == MaskSpec()  # eval: centres, no masks
    assert {c.name: c.torch for c in evaluation.columns} == eval_batch_dtypes(cfg)
    assert set(eval_batch_dtypes(cfg)) == {"frames", "video_index", "bad_video"}
    assert set(eval_batch_dtypes(_cfg())) == {"frames", "video_index"}  # error mode: nothing is replaced
    plain = DecodeSpec.from_config(_cfg("data.decoder=decord"), 32, train=True)
    assert [c.name for c in plain.columns] == ["frames", "tokens"] == list(train_batch_dtypes(_cfg("data.decoder=decord")))
    auto = DecodeSpec.from_config(_cfg(), 32, train=True)  # data.decoder=auto: the run counts its fallbacks
    assert [c.name for c in auto.columns] == ["frames", "tokens", "fallback_decoded"] == list(train_batch_dtypes(_cfg()))
    with pytest.raises(ValueError, match="cannot build mask columns.*mask_attention"):
        DecodeSpec.from_config(cfg, 32, train=True, mask_columns=("mask_attention",))


def test_the_udf_emits_exactly_the_schema_with_its_dtypes():
    cfg = _cfg("data.on_bad_video=skip")
    spec = DecodeSpec.from_config(cfg, 8, train=True, mask_columns=("mask_high", "mask_low", "mask_tube"))
    out = DecodeClips(spec, decoder=_Decoder())(_train_batch(["a.mp4", "bb.mp4"]))
    assert list(out) == [c.name for c in spec.columns]
    assert {k: torch.from_numpy(v).dtype for k, v in out.items()} == train_batch_dtypes(cfg, spec.masks.columns)
    assert out["frames"].shape == (2, 2, 8, 8, 3) and out["tokens"].shape == (2, 16)
    assert out["mask_high"].shape == (2, 2, 16) and out["mask_tube"].shape == (2, 16)
    assert out["bad_clip"].tolist() == [-1, -1]
    with pytest.raises(KeyError, match=r"produced no \['tokens', 'mask_high'"):
        assemble(spec.columns, {"frames": out["frames"]})


class _Samplings(_Decoder):
    """``_Decoder`` as an ``IndexedDecoder`` (what ``AutoDecoder`` composes)."""

    def decode_samplings(self, path, num_frames, size, train, rngs, start_s=None, end_s=None):
        return np.stack([self.decode(path, num_frames, size, train, rng) for rng in rngs])


def test_the_udf_flags_the_clips_auto_read_with_its_fallback(capsys):
    from raytrain.data.decoders.auto import AutoDecoder

    spec = DecodeSpec.from_config(_cfg(), 8, train=True)
    assert spec.decoder == "auto" and "fallback_decoded" in [c.name for c in spec.columns]
    udf = DecodeClips(spec, decoder=AutoDecoder(_Samplings(bad={"bb.mp4"}), _Samplings()))
    first = udf(_train_batch(["a.mp4", "bb.mp4", "ccc.mp4"]))
    assert first["fallback_decoded"].tolist() == [False, True, False]
    again = udf(_train_batch(["bb.mp4", "a.mp4"]))  # the file is read by the fallback from then on
    assert again["fallback_decoded"].tolist() == [True, False]
    assert capsys.readouterr().out.count("fallback #1") == 1


def test_train_frames_follow_each_rows_sample_seed():
    spec = DecodeSpec.from_config(_cfg(), 8, train=True)
    out = DecodeClips(spec, decoder=_Decoder())(_train_batch(["a.mp4", "a.mp4"]))
    want = [_Decoder().decode("a.mp4", 2, 8, True, np.random.default_rng(s)) for s in (100, 101)]
    assert all(np.array_equal(f, w) for f, w in zip(out["frames"], want))


def test_masks_come_from_each_rows_seed_and_have_the_asked_counts():
    spec = MaskSpec(patches=16, high_ratio=0.25, low_ratio=0.5, tube_grid=4, tube_ratio=0.5, tube_block=(2, 3))
    seeds = np.array([3, 4, 3])
    masks = clip_masks(seeds, 2, spec)
    assert set(masks) == {"mask_high", "mask_low", "mask_tube"} == set(spec.columns)
    assert (masks["mask_high"].sum(-1) == 4).all() and (masks["mask_low"].sum(-1) == 8).all()
    assert (masks["mask_tube"].sum(-1) == 8).all()
    for name, mask in masks.items():
        assert np.array_equal(mask[0], mask[2]), name  # same seed, same mask
    assert not np.array_equal(masks["mask_high"][0], masks["mask_high"][1])
    assert clip_masks(seeds, 2, MaskSpec()) == {}


def test_an_eval_clip_replaced_under_skip_is_black_and_flagged(capsys):
    spec = DecodeSpec.from_config(_cfg("data.on_bad_video=skip"), 8, train=False)
    out = DecodeClips(spec, decoder=_Decoder(bad={"x/bad.mp4"}))(_eval_batch(["ok.mp4", "x/bad.mp4", "ok3.mp4"]))
    assert out["bad_video"].tolist() == [False, True, False] and out["video_index"].tolist() == [0, 1, 2]
    assert not out["frames"][1].any() and (out["frames"][0] == len("ok.mp4")).all()
    assert "skipping bad video: cannot decode 'x/bad.mp4' with fake: moov atom not found" in capsys.readouterr().out
    error_mode = DecodeSpec.from_config(_cfg(), 8, train=False)
    with pytest.raises(VideoDecodeError, match=r"x/bad\.mp4"):
        DecodeClips(error_mode, decoder=_Decoder(bad={"x/bad.mp4"}))(_eval_batch(["x/bad.mp4"]))


def test_a_decoder_bug_is_a_decode_error_naming_the_file():
    class Broken(_Decoder):
        def decode(self, *args, **kwargs):
            raise IndexError("list index out of range")

    spec = DecodeSpec.from_config(_cfg(), 8, train=False)
    with pytest.raises(VideoDecodeError, match=r"cannot decode 'v\.mp4' with fake: IndexError: list index") as err:
        DecodeClips(spec, decoder=Broken())(_eval_batch(["v.mp4"]))
    assert isinstance(err.value.__cause__, IndexError)


def test_the_read_through_cache_decodes_a_clip_once_for_all_its_samplings(tmp_path):
    decoder = _Decoder()
    reader = ClipReader(decoder, num_frames=2, image_size=8, train=True)
    cache = ReadThroughCache(reader, str(tmp_path), samplings=3, seed=1)
    first, hit = cache.read("a.mp4", None, None, clip=5, sampling=0)
    again, hit_again = cache.read("a.mp4", None, None, clip=5, sampling=2)  # the same batch: queued, not decoded
    assert not hit and not hit_again and decoder.calls == ["a.mp4"] * 3  # its 3 samplings, decoded once
    cache.flush()
    assert len(list(tmp_path.glob("shard-*.arrow"))) == 1
    other = ReadThroughCache(ClipReader(_Decoder(), 2, 8, True), str(tmp_path), samplings=3, seed=1)
    for sampling, want in ((0, first), (2, again)):
        frames, hit = other.read("a.mp4", None, None, clip=5, sampling=sampling)
        assert hit and np.array_equal(frames, want)
    cache.flush()  # nothing queued: no empty shard
    assert len(list(tmp_path.glob("shard-*.arrow"))) == 1


def test_substitutes_are_a_seeded_draw_that_skips_bad_candidates():
    rows = [{"path": p, "start_s": np.nan, "end_s": np.nan, "captions": [f"about {p}"]}
            for p in ("g1.mp4", "g22.mp4", "g333.mp4")]

    def draw(bad=(), seed=7):
        reader = ClipReader(_Decoder(bad), 2, 8, True)
        return Substitutes(reader, rows).draw("x.mp4", seed), reader

    (frames, caption), _ = draw()
    (frames_again, caption_again), _ = draw()
    assert caption == caption_again and np.array_equal(frames, frames_again)
    (_, other_caption), reader = draw(bad={caption.removeprefix("about ")})
    assert other_caption != caption and caption.removeprefix("about ") in reader.known_bad
    with pytest.raises(VideoDecodeError, match=r"'x\.mp4'.*no good substitute among 3 train clips tried"):
        draw(bad={r["path"] for r in rows})


class _Model(torch.nn.Module):
    """Embeds a video by its mean grey level and a text by its length: clip i matches caption i."""

    def encode_video(self, frames):
        level = frames.float().mean(dim=(1, 2, 3, 4))
        return torch.nn.functional.normalize(torch.stack([torch.cos(level / 40), torch.sin(level / 40)], 1), dim=-1)

    def encode_text(self, tokens):
        return self.encode_video(tokens)


def _tokenize(texts):
    return torch.stack([torch.full((1, 1, 1, 1), float(len(t) * 10)) for t in texts])


def test_evaluation_counts_and_names_the_eval_clips_replaced_under_skip(capsys):
    from raytrain.eval.retrieval import evaluate_model

    texts = ["a", "bb", "ccc", "dddd"]
    frames = torch.stack([torch.full((1, 1, 1, 3), len(t) * 10, dtype=torch.uint8) for t in texts])
    frames[2] = 0  # clip 2 could not be decoded: a black video
    flags = torch.tensor([False, False, True, False])
    batches = [{FRAMES.name: frames[i:i + 2], "video_index": torch.arange(i, i + 2), "bad_video": flags[i:i + 2]}
               for i in (0, 2)]
    names = ["v0.mp4", "v1.mp4", "v2.mp4", "v3.mp4"]
    metrics = evaluate_model(_Model(), batches, texts, np.arange(4), 4, _tokenize, "cpu", video_names=names)
    assert metrics["bad_eval_videos"] == 1.0 and metrics["t2v_R1"] == 75.0
    out = capsys.readouterr().out
    assert "1 of 4 clips could not be decoded" in out and "v2.mp4" in out and "v1.mp4" not in out
    # Error mode (no such column): the metrics are what they always were.
    plain = [{k: v for k, v in b.items() if k != "bad_video"} for b in batches]
    assert "bad_eval_videos" not in evaluate_model(_Model(), plain, texts, np.arange(4), 4, _tokenize, "cpu")
    clean = [{**b, "bad_video": torch.zeros(2, dtype=torch.bool)} for b in plain]
    assert evaluate_model(_Model(), clean, texts, np.arange(4), 4, _tokenize, "cpu")["bad_eval_videos"] == 0.0
    assert "could not be decoded" not in capsys.readouterr().out
