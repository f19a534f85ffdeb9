"""Diffusion models from diffusers: UNet presets per condition and model size, and noise schedulers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    FlowMatchEulerDiscreteScheduler,
    UNet2DConditionModel,
    UNet2DModel,
)

from pixelforge.errors import UsageError

CONDITIONS = ("none", "class", "text")
MODEL_SIZES = ("tiny", "small", "base")
# epsilon and v_prediction are DDPM parameterisations; flow is rectified flow (Liu et al. 2023; Lipman
# et al. 2023): x_t = (1 - s) x0 + s eps on a straight line, the model predicts the velocity eps - x0
PREDICTIONS = ("epsilon", "v_prediction", "flow")
# how training draws the noise level: uniform over the timesteps, or logit-normal (Esser et al. 2024,
# the SD3 paper): sigmoid(N(mean, std)), which spends the steps on the middle noise levels
TIMESTEP_SAMPLING = ("uniform", "logit-normal")
BETA_SCHEDULES = {"cosine": "squaredcos_cap_v2", "linear": "linear"}
SAMPLERS = ("ddim", "ddpm", "dpm++", "euler")
# classifier-free guidance scale of generate and of training's sample grids. Measured on the shapes benchmark
# (20-minute run, training prompts): guidance 1.5 / 2 / 3 / 6 drew all five attributes right 0.981 / 0.975 /
# 0.919 / 0.769 of the time, the withheld combinations' colour 0.950 / 1.000 / 1.000 / 1.000; at 2 the spread
# of position and size over one prompt's images was 1.12x and 0.87x the training images' (3: 0.86x, 0.69x)
GUIDANCE = 2.0

# block widths, layers per block, group-norm groups. tiny is the measured 2.7M-parameter CPU model.
_PRESETS = {
    "tiny": ((32, 64, 96), 1, 8),
    "small": ((64, 128, 192), 2, 16),
    "base": ((128, 256, 256, 384), 2, 32),
}


@dataclass
class DiffusionConfig:
    """What defines a diffusion model (saved in the run's config.json)."""

    condition: str = "text"
    model_size: str = "tiny"
    image_size: int = 32
    prediction: str = "v_prediction"
    beta_schedule: str = "cosine"
    zero_terminal_snr: bool = True
    timesteps: int = 1000
    cond_drop: float = 0.1  # probability of dropping the condition in training (classifier-free guidance)
    text_encoder: str = "minilm"
    text_tokens: int = 16
    text_dim: int = 384
    # which hidden layer of the text encoder: -2, the penultimate, keeps left/right apart (see MiniLMEncoder)
    text_layer: int = -2
    # text: also add the caption's pooled (sentence) embedding to the timestep embedding, so every
    # ResNet block of every level sees the whole prompt, as a class embedding is seen
    text_pooled: bool = True
    # text: how many of the UNet's lowest levels have cross-attention (1: only the 8x8 one at 32 px)
    cross_attention_levels: int = 1
    # text: add a learned 2D position embedding to the input of every cross-attention, so a query
    # knows where in the image it is and "top left" can attend differently from "bottom right"
    attention_positions: bool = True
    # Min-SNR-gamma loss weighting (Hang et al. 2023); 0 turns it off (plain MSE). For v-prediction
    # gamma 100 weighs every step as epsilon-prediction's loss would, except the cleanest (SNR > 100,
    # abar > 0.99), which it caps. Measured on the shapes benchmark, gamma 5 / 20 / 100: shape 0.850 /
    # 0.919 / 0.994 (the small gamma starves the low-noise steps that draw a diamond's corners).
    snr_gamma: float = 100.0
    timestep_sampling: str = "uniform"
    logit_mean: float = 0.0  # logit-normal timestep sampling: the mean and spread of the logit
    logit_std: float = 1.0
    # FiLM: the timestep (+ class or pooled caption) embedding scales and shifts every ResNet block's
    # normalised features (diffusers' resnet_time_scale_shift="scale_shift") instead of only adding to them
    film: bool = False
    # the UNet works on p x p patches of pixels (pixel-unshuffle: 3 x S x S in, 3p^2 x S/p x S/p): about
    # p^2 fewer positions per layer. See the 5-minute benchmark figures in docs/benchmarks.md.
    patch_size: int = 1
    # block widths, comma-separated, instead of the --model-size preset's (e.g. "64,128,128")
    widths: str = ""
    num_classes: int = 0
    # what runs saved before these options existed did (their config.json lacks the key)
    BEFORE_OPTION: ClassVar[dict[str, Any]] = {
        "text_layer": -1,
        "cross_attention_levels": 1,
        "attention_positions": False,
        "timestep_sampling": "uniform",
        "film": False,
        "patch_size": 1,
        "widths": "",
    }

    def blocks(self) -> tuple[tuple[int, ...], int, int]:
        """Block widths, layers per block and group-norm groups: the preset's, or --widths'."""
        widths, layers, groups = _PRESETS[self.model_size]
        if self.widths:
            widths = tuple(int(w) for w in self.widths.split(","))
        return widths, layers, groups

    def validate(self) -> None:
        for flag, value, allowed in (
            ("--condition", self.condition, CONDITIONS),
            ("--model-size", self.model_size, MODEL_SIZES),
            ("--prediction", self.prediction, PREDICTIONS),
            ("--beta-schedule", self.beta_schedule, tuple(BETA_SCHEDULES)),
            ("--timestep-sampling", self.timestep_sampling, TIMESTEP_SAMPLING),
        ):
            if value not in allowed:
                raise UsageError(f"{flag} {value!r}: choose one of {', '.join(allowed)}")
        if self.patch_size not in (1, 2, 4):
            raise UsageError(f"--patch-size {self.patch_size}: choose 1, 2 or 4")
        try:
            widths, _, groups = self.blocks()
        except ValueError:
            raise UsageError(f"--widths {self.widths!r}: give channel counts, comma-separated, e.g. 48,96,96") from None
        if not widths or any(w <= 0 or w % groups for w in widths):
            raise UsageError(f"--widths {self.widths!r}: each width must be a positive multiple of {groups}")
        levels = len(widths)
        multiple = self.patch_size * 2 ** (levels - 1)
        if self.image_size < 8 or self.image_size % multiple:
            raise UsageError(
                f"--image-size {self.image_size}: must be a multiple of {multiple} "
                f"(patches of {self.patch_size}, and the UNet halves it {levels - 1} times)"
            )
        if not 0.0 <= self.cond_drop < 1.0:
            raise UsageError(f"--cond-drop {self.cond_drop}: choose a probability in [0, 1)")
        if not 1 <= self.cross_attention_levels <= levels:
            raise UsageError(
                f"--cross-attention-levels {self.cross_attention_levels}: choose 1 to {levels} "
                f"(the {self.model_size} UNet has {levels} levels)"
            )
        if self.logit_std <= 0:
            raise UsageError(f"--logit-std {self.logit_std}: must be positive (1.0 is the SD3 setting)")
        if self.snr_gamma < 0:
            raise UsageError(f"--snr-gamma {self.snr_gamma}: choose 0 (off) or a positive number such as 100")


def build_unet(cfg: DiffusionConfig) -> torch.nn.Module:
    """The UNet for ``cfg``: UNet2DModel (none/class) or UNet2DConditionModel (text).

    Class conditioning reserves the id ``num_classes`` for "no class", the dropped condition
    of classifier-free guidance. Text conditioning uses cross-attention on the lowest level only:
    at 32 px that is where the layout is decided, and it is the cheapest place for attention.
    With ``text_pooled`` the caption's pooled embedding is also projected and added to the
    timestep embedding (diffusers' ``class_embed_type="projection"``), which reaches every block.
    """
    widths, layers, groups = cfg.blocks()
    n, size, channels = len(widths), cfg.image_size // cfg.patch_size, 3 * cfg.patch_size**2
    if cfg.condition == "text":
        k = cfg.cross_attention_levels
        down = ("DownBlock2D",) * (n - k) + ("CrossAttnDownBlock2D",) * k
        up = ("CrossAttnUpBlock2D",) * k + ("UpBlock2D",) * (n - k)
        unet = UNet2DConditionModel(
            sample_size=size,
            in_channels=channels,
            out_channels=channels,
            layers_per_block=layers,
            block_out_channels=widths,
            down_block_types=down,
            up_block_types=up,
            cross_attention_dim=cfg.text_dim,
            attention_head_dim=8,
            norm_num_groups=groups,
            resnet_time_scale_shift="scale_shift" if cfg.film else "default",
            class_embed_type="projection" if cfg.text_pooled else None,
            projection_class_embeddings_input_dim=cfg.text_dim if cfg.text_pooled else None,
        )
        if cfg.attention_positions:
            add_attention_positions(unet, size)
        return unet
    down = ("DownBlock2D",) * (n - 1) + ("AttnDownBlock2D",)
    up = ("AttnUpBlock2D",) + ("UpBlock2D",) * (n - 1)
    return UNet2DModel(
        sample_size=size,
        in_channels=channels,
        out_channels=channels,
        layers_per_block=layers,
        block_out_channels=widths,
        down_block_types=down,
        up_block_types=up,
        norm_num_groups=groups,
        attention_head_dim=8,
        resnet_time_scale_shift="scale_shift" if cfg.film else "default",
        num_class_embeds=cfg.num_classes + 1 if cfg.condition == "class" else None,
    )


class PositionalProjection(torch.nn.Module):
    """A Transformer2DModel's input projection plus a learned (1, C, H, W) position embedding.

    diffusers' continuous-input transformer has no position embedding: every query at a level
    is computed from content alone, and where a location is can only leak in through the
    convolutions' zero padding. Measured on the shapes benchmark without it: the model's
    clean-image estimate from pure noise is the same in all four corners for "top left" and
    "bottom right" prompts. The embedding starts as a 2D sine-cosine table (Vaswani et al. 2017,
    per axis) so positions are told apart from the first step, and is trained with the rest.
    """

    def __init__(self, proj: torch.nn.Conv2d, height: int, width: int):
        super().__init__()
        self.proj = proj
        self.pos = torch.nn.Parameter(sincos_2d(proj.out_channels, height, width).unsqueeze(0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x) + self.pos.to(x.dtype)


def sincos_2d(channels: int, height: int, width: int) -> torch.Tensor:
    """(C, H, W): sin and cos of the row index at C/4 frequencies, then of the column index; zero-padded."""
    quarter = channels // 4
    freqs = 1.0 / (100.0 ** (torch.arange(quarter, dtype=torch.float32) / max(quarter, 1)))
    rows = torch.arange(height, dtype=torch.float32)[:, None] * freqs  # (H, C/4)
    cols = torch.arange(width, dtype=torch.float32)[:, None] * freqs  # (W, C/4)
    table = torch.zeros(channels, height, width)
    table[0 * quarter : 1 * quarter] = rows.sin().T[:, :, None]
    table[1 * quarter : 2 * quarter] = rows.cos().T[:, :, None]
    table[2 * quarter : 3 * quarter] = cols.sin().T[:, None, :]
    table[3 * quarter : 4 * quarter] = cols.cos().T[:, None, :]
    return table


def add_attention_positions(unet: UNet2DConditionModel, image_size: int) -> None:
    """Give every cross-attention transformer of ``unet`` a position embedding at its resolution."""
    n = len(unet.config.block_out_channels)
    levels = [(block, image_size >> i) for i, block in enumerate(unet.down_blocks)]
    levels.append((unet.mid_block, image_size >> (n - 1)))
    levels += [(block, image_size >> (n - 1 - i)) for i, block in enumerate(unet.up_blocks)]
    for block, size in levels:
        for transformer in getattr(block, "attentions", None) or []:
            if not isinstance(transformer.proj_in, torch.nn.Conv2d):
                raise ValueError("attention positions need the transformer's convolutional input projection")
            transformer.proj_in = PositionalProjection(transformer.proj_in, size, size)


def train_scheduler(cfg: DiffusionConfig) -> DDPMScheduler:
    """The forward (noising) process used in training; samplers are built from its config."""
    return DDPMScheduler(
        num_train_timesteps=cfg.timesteps,
        beta_schedule=BETA_SCHEDULES[cfg.beta_schedule],
        prediction_type=cfg.prediction,
        rescale_betas_zero_snr=cfg.zero_terminal_snr,
        timestep_spacing="trailing",
        clip_sample=False,
    )


def sampler(name: str, cfg: DiffusionConfig):
    """A sampling scheduler: ddim, ddpm or dpm++ (DPM-Solver++ 2M), same noise schedule as training.

    Trailing timestep spacing so that, with a zero-terminal-SNR schedule, sampling starts from
    pure noise at the last timestep (Lin et al. 2024, "Common diffusion noise schedules and
    sample steps are flawed").

    An epsilon model's first steps divide by sqrt(abar_T), which is ~0 on a cosine schedule: its
    estimate of the clean image is clipped to [-1, 1] there, or it blows up (measured: pure noise).

    A flow model integrates its ODE from s = 1 (noise) to 0: euler, or ddim, which for a straight
    path is the same first-order step; dpm++ with flow sigmas. It has no stochastic ddpm sampler.
    """
    if name not in SAMPLERS:
        raise UsageError(f"--sampler {name!r}: choose one of {', '.join(SAMPLERS)}")
    if cfg.prediction == "flow":
        if name in ("ddim", "euler"):
            return FlowMatchEulerDiscreteScheduler(num_train_timesteps=cfg.timesteps, shift=1.0)
        if name == "dpm++":
            return DPMSolverMultistepScheduler(
                num_train_timesteps=cfg.timesteps,
                algorithm_type="dpmsolver++",
                solver_order=2,
                prediction_type="flow_prediction",
                use_flow_sigmas=True,
                flow_shift=1.0,
                final_sigmas_type="zero",
            )
        raise UsageError(f"--sampler {name}: a flow model samples with euler (or ddim, the same step) or dpm++")
    if name == "euler":
        raise UsageError("--sampler euler: for flow models (--prediction flow); choose ddim, ddpm or dpm++")
    base: dict[str, Any] = dict(train_scheduler(cfg).config)
    clip = cfg.prediction == "epsilon"
    if name == "ddim":
        return DDIMScheduler.from_config(base, timestep_spacing="trailing", clip_sample=clip, set_alpha_to_one=False)
    if name == "ddpm":
        return DDPMScheduler.from_config(base, timestep_spacing="trailing", clip_sample=clip)
    return DPMSolverMultistepScheduler.from_config(
        base, algorithm_type="dpmsolver++", solver_order=2, timestep_spacing="trailing", final_sigmas_type="zero"
    )


def noise_levels(cfg: DiffusionConfig, u: torch.Tensor) -> torch.Tensor:
    """Training noise levels in (0, 1) from standard normal draws ``u`` (B,): uniform or logit-normal.

    Uniform maps u through the normal CDF, so both settings use the same draws. A DDPM model's
    timestep is ``floor(level * T)``; a flow model's noise fraction s is the level itself.
    """
    if cfg.timestep_sampling == "logit-normal":
        return torch.sigmoid(cfg.logit_mean + cfg.logit_std * u)
    return 0.5 * (1 + torch.erf(u / 2**0.5))


def denoise(
    unet: torch.nn.Module, cfg: DiffusionConfig, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None
) -> torch.Tensor:
    """One UNet call: the model's prediction (noise or velocity) for noisy images ``x`` at ``t``."""
    p = cfg.patch_size
    if p > 1:
        x = torch.nn.functional.pixel_unshuffle(x, p)
    if cfg.condition == "text":
        pooled = pool_tokens(cond) if cfg.text_pooled else None
        out = unet(x, t, encoder_hidden_states=cond, class_labels=pooled).sample
    elif cfg.condition == "class":
        out = unet(x, t, class_labels=cond).sample
    else:
        out = unet(x, t).sample
    return torch.nn.functional.pixel_shuffle(out, p) if p > 1 else out


def pool_tokens(tokens: torch.Tensor) -> torch.Tensor:
    """(B, L, D) token embeddings with zeroed padding -> (B, D) sentence embeddings.

    The mean over real tokens (what sentence-transformers' MiniLM was trained to pool),
    L2-normalised and scaled by sqrt(D) so its entries are of unit size, as the projection expects.
    """
    real = (tokens.abs().sum(-1, keepdim=True) > 0).to(tokens.dtype)  # (B, L, 1)
    mean = (tokens * real).sum(1) / real.sum(1).clamp(min=1)
    return torch.nn.functional.normalize(mean, dim=-1) * tokens.shape[-1] ** 0.5


def snr_weights(alphas_cumprod: torch.Tensor, t: torch.Tensor, gamma: float, prediction: str) -> torch.Tensor:
    """Per-sample loss weights of Min-SNR-gamma: min(SNR, gamma) / SNR for epsilon, / (SNR + 1) for v.

    SNR(t) = abar / (1 - abar). Capping the weight of the easy, low-noise steps lets the model
    spend its capacity on the noisier steps, and converges faster (Hang et al. 2023, "Efficient
    Diffusion Training via Min-SNR Weighting Strategy"). For v-prediction min(SNR, gamma) / (SNR + 1)
    is epsilon-prediction's weight SNR / (SNR + 1) wherever SNR <= gamma.
    """
    a = alphas_cumprod[t]
    snr = a / (1 - a).clamp(min=1e-12)
    capped = snr.clamp(max=gamma)
    return capped / (snr + 1) if prediction == "v_prediction" else capped / snr.clamp(min=1e-12)
