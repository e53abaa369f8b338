import pytest
import torch

from raytrain.config import ModelSection
from raytrain.model.clip_video import build_model, get_tokenizer, model_image_size, vit_forward


@pytest.fixture(scope="module")
def tokenizer():
    return get_tokenizer("RT-Micro-ViT", 16)


@pytest.mark.parametrize("temporal", ["meanP", "seqTransf"])
def test_shapes_and_normalised(temporal, tokenizer):
    torch.manual_seed(0)
    model = build_model(ModelSection(arch="RT-Micro-ViT", temporal=temporal, temporal_layers=1))
    frames = torch.randint(0, 256, (3, 4, 32, 32, 3), dtype=torch.uint8)
    tokens = tokenizer(["a red circle", "a blue square moves left", "x"])
    out = model(frames, tokens)
    assert out["video"].shape == (3, 32) and out["text"].shape == (3, 32)
    assert torch.allclose(out["video"].norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(out["text"].norm(dim=-1), torch.ones(3), atol=1e-5)
    assert out["logit_scale"].item() == pytest.approx(1 / 0.07, rel=1e-4)


def test_token_dropping_pass_equals_full_pass_when_nothing_is_dropped():
    torch.manual_seed(0)
    model = build_model(ModelSection(arch="RT-Micro-ViT"))
    images = torch.randn(5, 3, 32, 32)
    visual = model.clip.visual
    full = visual(images)
    n = visual.positional_embedding.shape[0] - 1
    keep_all = torch.arange(n).expand(5, n)
    assert torch.allclose(vit_forward(visual, images).frame_embeds, full, atol=1e-6)
    assert torch.allclose(vit_forward(visual, images, keep_all).frame_embeds, full, atol=1e-6)
    kept = vit_forward(visual, images, keep_all[:, :5], return_tokens=True)
    assert kept.tokens.shape == (5, 1 + 5, visual.transformer.width)


def test_text_matches_open_clip_at_full_context(tokenizer):
    torch.manual_seed(0)
    model = build_model(ModelSection(arch="RT-Micro-ViT"))
    tokens = tokenizer(["a small red circle", "two objects"])  # 16 = the tower's context length
    ours = model.encode_text(tokens)
    ref = model.clip.encode_text(tokens, normalize=True)
    assert torch.allclose(ours, ref, atol=1e-5)


def test_meanp_is_order_invariant_seqtransf_is_not():
    torch.manual_seed(0)
    f = torch.randn(2, 5, 32)
    for temporal, invariant in (("meanP", True), ("seqTransf", False)):
        model = build_model(ModelSection(arch="RT-Micro-ViT", temporal=temporal, temporal_layers=1))
        same = torch.allclose(model.pool_frames(f), model.pool_frames(f.flip(1)), atol=1e-6)
        assert same == invariant


def test_unknown_arch_and_missing_weights():
    with pytest.raises(ValueError, match="model.arch"):
        model_image_size("No-Such-Model")
    with pytest.raises(FileNotFoundError, match="model.pretrained"):
        build_model(ModelSection(arch="RT-Micro-ViT", pretrained="/nonexistent/w.pt"))


def test_local_checkpoint_path_loads_weights(tmp_path):
    torch.manual_seed(1)
    a = build_model(ModelSection(arch="RT-Micro-ViT"))
    path = tmp_path / "clip.pt"
    torch.save({"state_dict": a.clip.state_dict()}, path)
    torch.manual_seed(2)
    b = build_model(ModelSection(arch="RT-Micro-ViT", pretrained=str(path)))
    for (name, pa), pb in zip(a.clip.state_dict().items(), b.clip.state_dict().values()):
        assert torch.equal(pa, pb), name
