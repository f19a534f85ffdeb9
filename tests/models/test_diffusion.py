"""The diffusion model's pieces: Min-SNR weights, pooled text embeddings, text layers, attention positions."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from pixelforge.errors import UsageError
from pixelforge.models.diffusion import (
    DiffusionConfig,
    build_unet,
    denoise,
    noise_levels,
    pool_tokens,
    sampler,
    sincos_2d,
    snr_weights,
)
from pixelforge.models.sampling import sample_diffusion
from pixelforge.models.text import MiniLMEncoder
from pixelforge.train.families import config_from_saved


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
    s3 = 3**0.5
    assert torch.allclose(pooled[0], torch.tensor([s3 / 2**0.5, s3 / 2**0.5, 0.0]), atol=1e-6)
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
    caps = [
        "a small red circle in the top left on a blue background",
        "a small red circle in the top right on a blue background",
    ]
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
    assert [type(b).__name__ for b in unet.down_blocks] == [
        "DownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
    ]
    assert [type(b).__name__ for b in unet.up_blocks] == ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"]
    out = denoise(unet, two, torch.randn(2, 3, 8, 8), torch.tensor([3, 700]), torch.randn(2, 4, 16))
    assert out.shape == (2, 3, 8, 8)
    one = build_unet(DiffusionConfig(condition="text", image_size=8, text_dim=16))
    assert [type(b).__name__ for b in one.down_blocks][1] == "DownBlock2D"
    with pytest.raises(UsageError, match="--cross-attention-levels 0: choose 1 to 3"):
        DiffusionConfig(cross_attention_levels=0).validate()


def test_sincos_table_tells_every_position_apart():
    table = sincos_2d(8, 3, 4)  # 2 frequencies per quarter: 1 and 1/10
    assert table.shape == (8, 3, 4)
    assert torch.allclose(
        table[:, 2, 1],
        torch.tensor(
            [
                math.sin(2),
                math.sin(0.2),
                math.cos(2),
                math.cos(0.2),
                math.sin(1),
                math.sin(0.1),
                math.cos(1),
                math.cos(0.1),
            ]
        ),
    )
    flat = table.flatten(1).T  # (12 positions, 8)
    assert torch.cdist(flat, flat).add(torch.eye(12)).min() > 0.05


def test_attention_positions_at_every_cross_attention_resolution():
    cfg = DiffusionConfig(condition="text", image_size=16, text_dim=16, cross_attention_levels=2)
    unet = build_unet(cfg)
    shapes = {k: tuple(v.shape) for k, v in unet.state_dict().items() if k.endswith(".pos")}
    # down level 1 (8x8, 64 channels), level 2 and the middle (4x4, 96), up levels 0 (4x4) and 1 (8x8)
    assert shapes == {
        "down_blocks.1.attentions.0.proj_in.pos": (1, 64, 8, 8),
        "down_blocks.2.attentions.0.proj_in.pos": (1, 96, 4, 4),
        "mid_block.attentions.0.proj_in.pos": (1, 96, 4, 4),
        **{f"up_blocks.0.attentions.{i}.proj_in.pos": (1, 96, 4, 4) for i in range(2)},
        **{f"up_blocks.1.attentions.{i}.proj_in.pos": (1, 64, 8, 8) for i in range(2)},
    }
    # with the embeddings zeroed, the network is the plain one with the same weights
    torch.manual_seed(0)
    plain = build_unet(
        DiffusionConfig(
            condition="text", image_size=16, text_dim=16, cross_attention_levels=2, attention_positions=False
        )
    )
    state = {k.replace("proj_in.proj.", "proj_in."): v for k, v in unet.state_dict().items() if not k.endswith(".pos")}
    plain.load_state_dict(state)
    x, t, cond = torch.randn(2, 3, 16, 16), torch.tensor([5, 900]), torch.randn(2, 4, 16)
    with torch.no_grad():
        with_pos = denoise(unet, cfg, x, t, cond)
        for name, p in unet.named_parameters():
            if name.endswith(".pos"):
                p.zero_()
        zeroed = denoise(unet, cfg, x, t, cond)
        assert torch.allclose(zeroed, denoise(plain, cfg, x, t, cond), atol=1e-6)
        assert not torch.allclose(zeroed, with_pos, atol=1e-3)
    assert not any(k.endswith(".pos") for k in plain.state_dict())


def test_a_run_saved_before_an_option_loads_as_it_was_trained():
    old = config_from_saved(DiffusionConfig, {"condition": "text", "image_size": 8, "text_pooled": True})
    assert (old.text_layer, old.cross_attention_levels, old.attention_positions) == (-1, 1, False)
    assert old.text_pooled and old.image_size == 8
    assert config_from_saved(DiffusionConfig, dataclasses.asdict(DiffusionConfig())) == DiffusionConfig()
    assert DiffusionConfig().attention_positions and DiffusionConfig().text_layer == -2


def test_noise_levels_uniform_and_logit_normal():
    u = torch.tensor([0.0, 1.0, -2.0])
    uniform = noise_levels(DiffusionConfig(), u)  # the standard normal CDF of u
    assert torch.allclose(uniform, torch.tensor([0.5, 0.841345, 0.022750]), atol=1e-6)
    shifted = noise_levels(DiffusionConfig(timestep_sampling="logit-normal", logit_mean=0.5, logit_std=2.0), u)
    assert torch.allclose(shifted, torch.sigmoid(torch.tensor([0.5, 2.5, -3.5])))
    with pytest.raises(UsageError, match="--timestep-sampling 'normal': choose one of uniform, logit-normal"):
        DiffusionConfig(timestep_sampling="normal").validate()
    with pytest.raises(UsageError, match="--logit-std 0"):
        DiffusionConfig(logit_std=0).validate()


class _ExactVelocity(torch.nn.Module):
    """The true flow velocity when every training image is ``target``: v(x_s, s) = (x_s - target) / s."""

    def __init__(self, target: torch.Tensor, timesteps: int):
        super().__init__()
        self.target, self.timesteps, self.times = target, timesteps, []

    def forward(self, x, t):
        self.times.append(t.clone())
        s = (t.float() / self.timesteps).view(-1, 1, 1, 1)
        return dataclasses.make_dataclass("Out", ["sample"])((x - self.target) / s)


@pytest.mark.parametrize("name", ["euler", "ddim", "dpm++"])
def test_flow_samplers_follow_the_velocity_to_the_data(name):
    cfg = DiffusionConfig(condition="none", image_size=4, prediction="flow")
    target = torch.linspace(-0.9, 0.9, 48).view(1, 3, 4, 4)
    exact = _ExactVelocity(target, cfg.timesteps)
    x = sample_diffusion(
        exact,
        cfg,
        None,
        None,
        steps=8,
        sampler_name=name,
        generator=torch.Generator().manual_seed(0),
        device=torch.device("cpu"),
        n=2,
    )
    assert torch.allclose(x, target.expand(2, -1, -1, -1), atol=1e-4)
    first = exact.times[0]
    assert first.dtype == torch.float32 and float(first[0]) >= 999.0  # starts from (nearly) pure noise


def test_samplers_match_the_objective():
    with pytest.raises(UsageError, match="--sampler ddpm: a flow model samples with euler"):
        sampler("ddpm", DiffusionConfig(prediction="flow"))
    with pytest.raises(UsageError, match="--sampler euler: for flow models"):
        sampler("euler", DiffusionConfig())


def test_film_scales_and_shifts_every_resnet_block():
    plain = build_unet(DiffusionConfig(condition="text", image_size=8, text_dim=16))
    film = build_unet(DiffusionConfig(condition="text", image_size=8, text_dim=16, film=True))
    block, film_block = plain.down_blocks[0].resnets[0], film.down_blocks[0].resnets[0]
    # the time embedding projects to a scale and a shift per channel: twice the outputs
    assert film_block.time_emb_proj.out_features == 2 * block.time_emb_proj.out_features == 64
    out = denoise(
        film,
        DiffusionConfig(condition="text", image_size=8, text_dim=16, film=True),
        torch.randn(2, 3, 8, 8),
        torch.tensor([3, 700]),
        torch.randn(2, 4, 16),
    )
    assert out.shape == (2, 3, 8, 8)


class _Scale(torch.nn.Module):
    """A stand-in UNet that multiplies input channel k by k + 1, to see which channel each pixel travels in."""

    def forward(self, x, t, encoder_hidden_states=None, class_labels=None):
        scale = torch.arange(1, x.shape[1] + 1, dtype=x.dtype).view(1, -1, 1, 1)
        return type("Out", (), {"sample": x * scale})()


def test_patch_size_runs_the_unet_on_pixel_patches():
    cfg = DiffusionConfig(condition="text", image_size=16, text_dim=16, patch_size=2, widths="16,32")
    unet = build_unet(cfg)
    assert (unet.config.in_channels, unet.config.out_channels, unet.config.sample_size) == (12, 12, 8)
    assert unet.config.block_out_channels == (16, 32)
    # the cross-attention's position table is at the patched resolution (8 px -> 4 at the lower level)
    pos = [m.pos for n, m in unet.named_modules() if n.endswith("proj_in")]
    assert [tuple(p.shape) for p in pos] == [(1, 32, 4, 4)] * len(pos) and pos
    out = denoise(unet, cfg, torch.randn(2, 3, 16, 16), torch.tensor([3, 700]), torch.randn(2, 4, 16))
    assert out.shape == (2, 3, 16, 16)
    # each 2x2 patch is one position: channel c of pixel (i, j) is channel 4c + 2(i % 2) + (j % 2) of the patch
    x = torch.ones(1, 3, 4, 4)
    got = denoise(_Scale(), dataclasses.replace(cfg, condition="none"), x, torch.tensor([0]), None)
    c, i, j = torch.meshgrid(torch.arange(3), torch.arange(4), torch.arange(4), indexing="ij")
    assert torch.equal(got[0], (4 * c + 2 * (i % 2) + (j % 2) + 1).float())
    # patch 1 gives the UNet the image as it is: channel c of every pixel is channel c
    plain = denoise(_Scale(), DiffusionConfig(condition="none"), x, torch.tensor([0]), None)
    assert torch.equal(plain[0], (c + 1).float())


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"patch_size": 3}, "--patch-size 3: choose 1, 2 or 4"),
        ({"widths": "a,b"}, "--widths 'a,b': give channel counts"),
        ({"widths": "16,20"}, "--widths '16,20': each width must be a positive multiple of 8"),
        ({"patch_size": 2, "image_size": 12}, "--image-size 12: must be a multiple of 8 "),
        ({"patch_size": 4, "widths": "16,32", "image_size": 16}, None),
    ],
)
def test_patch_size_and_widths_are_checked(changes, message):
    cfg = DiffusionConfig(condition="text", **changes)
    if message is None:
        cfg.validate()
        return
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        cfg.validate()


def test_runs_saved_before_patches_load_unpatched():
    old = config_from_saved(DiffusionConfig, {"condition": "text", "image_size": 8})
    assert (old.patch_size, old.widths, old.blocks()) == (1, "", ((32, 64, 96), 1, 8))
