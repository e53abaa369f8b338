"""The temporal heads (raytrain/model/temporal.py): CLIP4Clip's initialisation rules, frame masks
through every head, seqLSTM packing and the seqTransf parameter layout old checkpoints use. Pure."""

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from open_clip.transformer import QuickGELU, Transformer
from torch import nn

from raytrain.config import Config, ConfigError, ModelSection, apply_overrides
from raytrain.eval.retrieval import embed_videos
from raytrain.methods import build_objective
from raytrain.model.clip_video import VideoTextDualEncoder, build_model, set_grad_checkpointing
from raytrain.model.temporal import MAX_FRAMES, SeqLSTM, SeqTransf, masked_mean

HEADS = ["meanP", "seqLSTM", "seqTransf"]
MICRO = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16,
                                         "patch_size": 8},
         "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}}


def micro_clip(text_width: int = 32, quick_gelu: bool = False) -> nn.Module:
    torch.manual_seed(0)
    text = dict(MICRO["text_cfg"], width=text_width)
    return open_clip.CLIP(MICRO["embed_dim"], MICRO["vision_cfg"], text, quick_gelu=quick_gelu)


def model(temporal: str, layers: int = 2, init: str = "auto", arch: str = "RT-Tiny-ViT") -> VideoTextDualEncoder:
    torch.manual_seed(0)
    return build_model(ModelSection(arch=arch, temporal=temporal, temporal_layers=layers,
                                    temporal_init=init)).eval()


# ---------------------------------------------------------------- initialisation rules


def test_seqtransf_starts_from_the_text_tower():
    m = model("seqTransf", layers=2)  # RT-Tiny-ViT: text width 64 = embed dim, 2 text blocks
    text_pos = m.clip.positional_embedding  # 32 rows: the first 32 frame positions are copied
    assert torch.equal(m.temporal.frame_position.weight[:32], text_pos)
    assert m.temporal.frame_position.weight.shape == (MAX_FRAMES, 64)  # the rest: std 0.01 random
    assert not torch.equal(m.temporal.frame_position.weight[32:], torch.zeros(MAX_FRAMES - 32, 64))
    for mine, text in zip(m.temporal.transformer.resblocks, m.clip.transformer.resblocks, strict=True):
        theirs = text.state_dict()
        assert mine.state_dict().keys() == theirs.keys()
        assert all(torch.equal(v, theirs[k]) for k, v in mine.state_dict().items())
    assert all(ln.eps == 1e-12 for ln in m.temporal.modules() if isinstance(ln, nn.LayerNorm))  # CLIP4Clip's


def test_only_the_first_blocks_are_copied():
    m = model("seqTransf", layers=1, init="text")
    assert len(m.temporal.transformer.resblocks) == 1
    first = m.clip.transformer.resblocks[0].mlp.c_fc.weight
    assert torch.equal(m.temporal.transformer.resblocks[0].mlp.c_fc.weight, first)


def test_auto_falls_back_to_random_and_text_refuses_naming_the_key():
    m = model("seqTransf", layers=3)  # the tiny text tower has 2 blocks
    assert m.temporal.init == "random" and model("seqTransf", layers=2).temporal.init == "text"
    assert not torch.equal(m.temporal.frame_position.weight[:32], m.clip.positional_embedding)
    with pytest.raises(ValueError, match=r"model.temporal_init.*2 blocks, fewer than model.temporal_layers=3"):
        model("seqTransf", layers=3, init="text")
    with pytest.raises(ValueError, match=r"model.temporal_init.*width 48 differs from the embedding size 32"):
        VideoTextDualEncoder(micro_clip(text_width=48), "seqTransf", 1, temporal_init="text")
    narrow = VideoTextDualEncoder(micro_clip(text_width=48), "seqTransf", 1)  # auto: random
    assert narrow.temporal.transformer.width == 32


def test_random_init_is_selectable():
    m = model("seqTransf", layers=2, init="random")
    assert not torch.equal(m.temporal.frame_position.weight[:32], m.clip.positional_embedding)
    text_blocks = m.clip.transformer.resblocks
    assert not torch.equal(m.temporal.transformer.resblocks[0].mlp.c_fc.weight, text_blocks[0].mlp.c_fc.weight)
    assert float(m.temporal.frame_position.weight.detach().std()) == pytest.approx(0.01, rel=0.1)


@pytest.mark.parametrize("init", ["text", "random"])
def test_quickgelu_towers_get_a_quickgelu_head(init):
    quick = VideoTextDualEncoder(micro_clip(quick_gelu=True), "seqTransf", 1, temporal_init=init)
    assert isinstance(quick.temporal.transformer.resblocks[0].mlp.gelu, QuickGELU)
    plain = VideoTextDualEncoder(micro_clip(), "seqTransf", 1, temporal_init=init)
    assert type(plain.temporal.transformer.resblocks[0].mlp.gelu) is nn.GELU
    assert open_clip.get_model_config("ViT-B-32-quickgelu")["quick_gelu"] is True  # what the archs set


def test_config_keys():
    cfg = apply_overrides(Config(), ["model.temporal=seqLSTM", "model.temporal_init=random"])
    assert (cfg.model.temporal, cfg.model.temporal_init) == ("seqLSTM", "random")
    assert Config().model.temporal_init == "auto"
    for bad in ("model.temporal_init=openai", "model.temporal=seqGRU"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            apply_overrides(Config(), [bad])


# ---------------------------------------------------------------- frame masks


def padded(f: torch.Tensor, extra: int, seed: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    """``f (B, T, ...)`` with ``extra`` garbage frames appended, and the mask of the real ones."""
    g = torch.Generator().manual_seed(seed)
    junk = (torch.randint(0, 256, (f.shape[0], extra, *f.shape[2:]), generator=g).to(f.dtype) if not
            f.is_floating_point() else 50 * torch.randn(f.shape[0], extra, *f.shape[2:], generator=g))
    mask = torch.cat([torch.ones(f.shape[:2], dtype=torch.uint8), torch.zeros(f.shape[0], extra, dtype=torch.uint8)], 1)
    return torch.cat([f, junk], dim=1), mask


@pytest.mark.parametrize("temporal", HEADS)
def test_padded_frames_change_nothing(temporal):
    m = model(temporal)
    torch.manual_seed(1)
    f = torch.randn(3, 4, 64)
    f6, mask6 = padded(f, 2)
    with torch.no_grad():
        assert torch.allclose(m.pool_frames(f6, mask6), m.pool_frames(f), atol=1e-6)
        real = m.frame_features(f6, mask6.bool())[:, :4]
        assert torch.allclose(real, m.frame_features(f), atol=1e-6)
        # a mixed batch: clip 0 has 6 real frames, clip 1 only 4
        mixed = mask6.clone()
        mixed[0] = 1
        out = m.pool_frames(f6, mixed)
        assert torch.allclose(out[0], m.pool_frames(f6[:1])[0], atol=1e-6)
        assert torch.allclose(out[1], m.pool_frames(f[1:2])[0], atol=1e-6)


@pytest.mark.parametrize("temporal", HEADS)
def test_no_mask_is_an_all_ones_mask(temporal):
    m = model(temporal)
    f = torch.randn(2, 5, 64)
    with torch.no_grad():
        assert torch.allclose(m.pool_frames(f, torch.ones(2, 5, dtype=torch.bool)), m.pool_frames(f), atol=1e-6)


def test_meanp_without_mask_is_unchanged_bit_for_bit():
    m = model("meanP")
    f = torch.randn(3, 6, 64)
    assert torch.equal(m.pool_frames(f), F.normalize(F.normalize(f, dim=-1).mean(dim=1), dim=-1))
    x = torch.tensor([[[1.0], [3.0], [float("nan")]]])
    assert torch.equal(masked_mean(x, torch.tensor([[1, 1, 0]])), torch.tensor([[2.0]]))  # no NaN leaks in


def test_encode_video_and_eval_read_the_frame_mask():
    m = model("seqTransf", arch="RT-Micro-ViT", layers=1)
    frames = torch.randint(0, 256, (2, 4, 32, 32, 3), dtype=torch.uint8)
    frames6, mask6 = padded(frames, 2)
    with torch.no_grad():
        short = m.encode_video(frames)
        assert torch.allclose(m.encode_video(frames6, mask6), short, atol=1e-5)
        assert not torch.allclose(m.encode_video(frames6), short, atol=1e-3)  # the mask is what helps
    batches = [{"frames": frames6, "frame_mask": mask6, "video_index": torch.tensor([1, 0])}]
    assert torch.allclose(embed_videos(m, batches, 2, "cpu"), short[[1, 0]], atol=1e-5)


@pytest.mark.parametrize("method", ["clip4clip", "dmae", "mascot"])
def test_objectives_pass_the_batch_frame_mask(method):
    """Padded frames change no loss. MASCOT without ISC: its reconstruction covers every frame's
    patches, padded ones included (docs/model_parity.md)."""
    torch.manual_seed(0)
    obj = build_objective(apply_overrides(Config(), ["model.arch=RT-Micro-ViT", "model.temporal=seqTransf",
                                                     "model.temporal_layers=1", f"method.name={method}",
                                                     "method.mascot.isc=false",
                                                     "data.num_frames=6", "data.max_words=16"])).eval()
    frames = torch.randint(0, 256, (3, 4, 32, 32, 3), dtype=torch.uint8)
    tokens = open_clip.get_tokenizer("RT-Micro-ViT", context_length=16)(["a red circle", "a blue cube", "two stars"])
    frames6, mask6 = padded(frames, 2)
    other6, _ = padded(frames, 2, seed=8)  # other garbage in the padded frames
    with torch.no_grad():
        loss_padded = obj({"frames": frames6, "tokens": tokens, "frame_mask": mask6})[0]
        assert float(obj({"frames": other6, "tokens": tokens, "frame_mask": mask6})[0]) == pytest.approx(
            float(loss_padded), abs=1e-5)
        if method == "clip4clip":  # the mask is what helps; the loss is that of the unpadded clips
            assert float(obj({"frames": other6, "tokens": tokens})[0]) != pytest.approx(float(loss_padded), abs=1e-5)
            assert float(obj({"frames": frames, "tokens": tokens})[0]) == pytest.approx(float(loss_padded), abs=1e-4)
    if method == "dmae":
        assert obj.video_features(frames6, mask6)["frame_mask"].tolist() == mask6.bool().tolist()


# ---------------------------------------------------------------- seqLSTM


def test_seqlstm_shape_and_packing():
    torch.manual_seed(0)
    head = SeqLSTM(8).eval()
    assert [n for n, _ in head.named_parameters()] == ["lstm.weight_ih_l0", "lstm.weight_hh_l0",
                                                       "lstm.bias_ih_l0", "lstm.bias_hh_l0"]
    f = torch.randn(2, 5, 8)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    with torch.no_grad():
        out = head(f, mask)
        assert out.shape == (2, 5, 8)
        assert torch.allclose(out[0, :3], head.lstm(f[:1, :3])[0][0] + f[0, :3], atol=1e-6)  # real frames only
        assert torch.equal(out[0, 3:], f[0, 3:])  # padded frames: the input alone (masked out later)
        assert torch.allclose(out[1], head.lstm(f[1:])[0][0] + f[1], atol=1e-6)
        assert torch.allclose(head(f), head.lstm(f)[0] + f)  # no mask: every frame real


# ---------------------------------------------------------------- checkpoints


def old_seqtransf_state(dim: int, layers: int) -> dict[str, torch.Tensor]:
    """The seqTransf parameters as raytrain saved them before CLIP4Clip's initialisation: a 64-row
    ``frame_position`` embedding and an open_clip ``Transformer(dim, layers, dim // 64)``."""
    torch.manual_seed(3)
    old = nn.ModuleDict({"frame_position": nn.Embedding(64, dim),
                         "transformer": Transformer(dim, layers, max(1, dim // 64), mlp_ratio=4.0)})
    return {f"temporal.{k}": v for k, v in old.state_dict().items()}


@pytest.mark.parametrize("init", ["auto", "random"])
def test_old_seqtransf_checkpoints_load(init):
    m = model("seqTransf", layers=2, init=init)
    state = {k: v for k, v in m.state_dict().items() if not k.startswith("temporal.")}
    state.update(old_seqtransf_state(64, 2))
    m.load_state_dict(state)  # strict: same names and shapes
    assert torch.equal(m.temporal.frame_position.weight, state["temporal.frame_position.weight"])
    fresh = model("meanP")
    fresh.load_state_dict({k: v for k, v in fresh.state_dict().items()})  # meanP has no temporal parameters
    assert not [k for k in fresh.state_dict() if k.startswith("temporal.")]


def test_old_checkpoint_of_a_gelu_tower_computes_what_it_did():
    m = model("seqTransf", layers=2)
    state = dict(m.state_dict())
    state.update(old_seqtransf_state(64, 2))
    m.load_state_dict(state)
    torch.manual_seed(0)
    old = nn.ModuleDict({"frame_position": nn.Embedding(64, 64), "transformer": Transformer(64, 2, 1)})
    old.load_state_dict({k[len("temporal."):]: v for k, v in state.items() if k.startswith("temporal.")})
    f = torch.randn(2, 6, 64)
    with torch.no_grad():
        before = f + old["transformer"](f + old["frame_position"].weight[:6])  # the old forward
        assert np.allclose(m.temporal(f).numpy(), before.numpy(), atol=1e-4)  # LayerNorm eps 1e-5 → 1e-12


def test_seqtransf_refuses_more_frames_than_positions():
    head = SeqTransf(16, 1, max_frames=4)
    with pytest.raises(ValueError, match="at most 4 frames"):
        head(torch.randn(1, 5, 16))


def test_grad_checkpointing_keeps_the_frame_mask():
    m = model("seqTransf", layers=2).train()
    f = torch.randn(2, 6, 64)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    plain = m.pool_frames(f, mask)
    set_grad_checkpointing(m)
    assert torch.allclose(m.pool_frames(f, mask), plain, atol=1e-6)
