"""The diffusion model's pieces: Min-SNR weights, pooled text embeddings, text layers."""

from __future__ import annotations

import pytest
import torch

from pixelforge.errors import UsageError
from pixelforge.models.diffusion import (
    DiffusionConfig, build_unet, denoise, pool_tokens, snr_weights,
)
from pixelforge.models.text import MiniLMEncoder


def test_snr_weights_exact():
    abar = torch.tensor([0.0, 0.5, 0.9, 0.99])  # SNR 0, 1, 9, 99
    t = torch.arange(4)
    v = snr_weights(abar, t, 5.0, "v_prediction")
    eps = snr_weights(abar, t, 5.0, "epsilon")
    assert torch.allclose(v, torch.tensor([0.0, 0.5, 0.5, 0.05]), atol=1e-6)
    assert torch.allclose(eps, torch.tensor([0.0, 1.0, 5 / 9, 5 / 99]), atol=1e-6)


def test_pool_tokens_ignores_padding():
    tokens = torch.zeros(2, 4, 3)
    tokens[0, :2] = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # two real tokens, two padding
    tokens[1, :1] = torch.tensor([[0.0, 0.0, 2.0]])
    pooled = pool_tokens(tokens)
    s3 = 3 ** 0.5
    assert torch.allclose(pooled[0], torch.tensor([s3 / 2 ** 0.5, s3 / 2 ** 0.5, 0.0]), atol=1e-6)
    assert torch.allclose(pooled[1], torch.tensor([0.0, 0.0, s3]), atol=1e-6)


def test_pooled_text_reaches_the_timestep_embedding():
    cfg = DiffusionConfig(condition="text", image_size=8, text_dim=16, text_pooled=True)
    unet = build_unet(cfg)
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([10, 500])
    cond = torch.randn(2, 4, 16)
    denoise(unet, cfg, x, t, cond).square().mean().backward()
    grad = unet.class_embedding.linear_1.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    plain = build_unet(DiffusionConfig(condition="text", image_size=8, text_dim=16, text_pooled=False))
    assert plain.class_embedding is None


def test_negative_snr_gamma_is_refused():
    with pytest.raises(UsageError, match="--snr-gamma"):
        DiffusionConfig(snr_gamma=-1).validate()


def test_text_layer_keeps_left_and_right_apart():
    caps = ["a small red circle in the top left on a blue background",
            "a small red circle in the top right on a blue background"]
    last, penultimate = MiniLMEncoder(16, layer=-1), MiniLMEncoder(16, layer=-2)
    direct = last.tokenizer(caps, padding="max_length", max_length=16, return_tensors="pt")
    with torch.inference_mode():
        expected = last.model(**direct).last_hidden_state * direct["attention_mask"].unsqueeze(-1)
    a = last.encode(caps)
    assert torch.allclose(a, expected) and a[:, -2:].abs().sum() == 0  # padding zeroed
    b = penultimate.encode(caps)
    # measured: 3.5 on the last layer, 8.0 on the penultimate
    assert (b[0] - b[1]).norm() > 2 * (a[0] - a[1]).norm()
    with pytest.raises(UsageError, match="--text-layer 7: MiniLM has hidden states -7..6"):
        MiniLMEncoder(16, layer=7)


def test_cross_attention_levels():
    two = DiffusionConfig(condition="text", image_size=8, text_dim=16, cross_attention_levels=2)
    unet = build_unet(two)
    assert [type(b).__name__ for b in unet.down_blocks] == ["DownBlock2D", "CrossAttnDownBlock2D",
                                                            "CrossAttnDownBlock2D"]
    assert [type(b).__name__ for b in unet.up_blocks] == ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
                                                          "UpBlock2D"]
    out = denoise(unet, two, torch.randn(2, 3, 8, 8), torch.tensor([3, 700]), torch.randn(2, 4, 16))
    assert out.shape == (2, 3, 8, 8)
    one = build_unet(DiffusionConfig(condition="text", image_size=8, text_dim=16))
    assert [type(b).__name__ for b in one.down_blocks][1] == "DownBlock2D"
    with pytest.raises(UsageError, match="--cross-attention-levels 0: choose 1 to 3"):
        DiffusionConfig(cross_attention_levels=0).validate()
