"""CLI of the train stage: `pixelforge train diffusion|gan|vae|classifier --data DIR --out RUN ...`.

Every family's command takes the shared loop's options (TRAIN_OPTIONS) and its own; the
commands are built from those two lists, so an option of the loop is declared once.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Annotated, Any

import typer

from pixelforge.console import print_result
from pixelforge.errors import UsageError
from pixelforge.options import TRAIN, AsJson, fill_config, read_tables
from pixelforge.train.config import TrainConfig

train_app = typer.Typer(help="Train a model on a dataset (one shared loop for every family).", no_args_is_help=True)

# (name, type, help, flags): the shared loop's options, as every `pixelforge train FAMILY` takes them
TRAIN_OPTIONS: list[tuple[str, type, str, tuple[str, ...]]] = [
    ("data", str, "Dataset directory to train on.", ()),
    ("out", str, "Run directory to write.", ("--out", "-o")),
    ("image_size", int, "Training resolution (images are center-cropped).", ()),
    ("batch_size", int, "Images per step.", ()),
    ("optimizer", str, "adamw, adam, sgd or rmsprop.", ()),
    ("lr", float, "Peak learning rate.", ()),
    ("weight_decay", float, "Weight decay.", ()),
    ("lr_schedule", str, "cosine or constant (after warm-up).", ()),
    ("warmup_steps", int, "Linear learning-rate warm-up steps.", ()),
    ("epochs", int, "Stop after this many epochs.", ()),
    ("max_steps", int, "Stop after this many steps.", ()),
    ("max_minutes", float, "Stop after this much wall time.", ()),
    ("grad_clip", float, "Clip the gradient norm (0: off).", ()),
    ("cpu_bf16", bool, "bf16 autocast on a CPU with native bf16 (AVX512-BF16 or AMX).", ()),
    ("ema_decay", float, "Decay of the weights' exponential moving average.", ()),
    ("seed", int, "Seed of every random choice (same seed, same run).", ()),
    ("device", str, "auto (CUDA when present), cpu, cuda, cuda:N, mps.", ()),
    ("eval_every", int, "Validation, sample grid and checkpoint every N steps.", ()),
    ("log_every", int, "Write training scalars every N steps.", ()),
    ("patience", int, "Stop after N evaluations without a better validation score.", ()),
    ("augment", str, "On-the-fly augmentation SPEC (as `pixelforge prepare`).", ()),
    ("sample_steps", int, "Sampling steps of the grid saved at each evaluation (diffusion).", ()),
    ("val_batches", int, "Validation batches per evaluation.", ()),
    ("val_fraction", float, "Share held out for validation when the dataset has no val split.", ()),
    (
        "policy",
        str,
        "Refuse samples a use policy forbids (licences, faces, consent): research, commercial, open or a TOML file.",
        (),
    ),
    (
        "override",
        str,
        "Train anyway on samples breaking these policy rules, comma-separated: opt_out, license, faces, consent "
        "(recorded in the run's config.json).",
        (),
    ),
    (
        "stream",
        bool,
        "Stream training images from the shards in DataLoader workers instead of decoding them "
        "into memory (default: only when they need more than --memory-gb).",
        (),
    ),
    ("memory_gb", float, "Decoded training data up to this size is held in memory.", ()),
    ("init", str, "Start from this run's best weights (fine-tuning); the model options default to its own.", ()),
    (
        "nproc",
        int,
        "Train with N processes under DistributedDataParallel (gloo on CPU, nccl with one GPU each); "
        "--batch-size is their total. Under torchrun, leave it out.",
        (),
    ),
]

FAMILY_OPTIONS: dict[str, list[tuple[str, type, str, tuple[str, ...]]]] = {
    "diffusion": [
        ("condition", str, "none, class or text.", ()),
        ("model_size", str, "tiny (CPU), small or base.", ()),
        ("patch_size", int, "The UNet sees p x p pixel patches as channels: 1, 2 or 4 (p^2 fewer positions).", ()),
        ("widths", str, "Block widths, comma-separated, instead of the --model-size preset's (e.g. 64,128,128).", ()),
        ("prediction", str, "epsilon, v_prediction, or flow (rectified flow).", ()),
        ("timestep_sampling", str, "uniform, or logit-normal (noise levels drawn around the middle).", ()),
        ("logit_mean", float, "Logit-normal timestep sampling: mean of the logit.", ()),
        ("logit_std", float, "Logit-normal timestep sampling: spread of the logit.", ()),
        ("film", bool, "Scale and shift each ResNet block by the timestep/condition embedding.", ()),
        ("beta_schedule", str, "cosine or linear.", ()),
        ("zero_terminal_snr", bool, "Rescale betas to zero terminal SNR.", ()),
        ("cond_drop", float, "Condition dropout for classifier-free guidance.", ()),
        ("snr_gamma", float, "Min-SNR-gamma loss weighting (0: plain MSE).", ()),
        ("cross_attention_levels", int, "Text: cross-attention on this many of the UNet's lowest levels.", ()),
        ("attention_positions", bool, "Text: a learned position embedding on the cross-attention's queries.", ()),
        ("text_layer", int, "Text: the encoder's hidden layer, -1 the last, -2 the penultimate.", ()),
        ("text_pooled", bool, "Text: also add the pooled caption embedding to the timestep embedding.", ()),
    ],
    "gan": [
        ("condition", str, "none or class (projection discriminator, conditional batch-norm).", ()),
        ("z_dim", int, "Dimension of the generator's noise input.", ()),
        ("width", int, "Channels at full resolution (doubled per coarser stage).", ()),
        ("loss", str, "hinge, or bce (non-saturating).", ()),
        ("diffaugment", str, "Comma list of color, translation, cutout; or none.", ()),
        ("lr_g", float, "Generator learning rate.", ()),
        ("lr_d", float, "Discriminator learning rate.", ()),
        ("beta1", float, "Adam beta1 of both players.", ()),
        ("beta2", float, "Adam beta2 of both players.", ()),
        ("n_critic", int, "Discriminator steps per generator step.", ()),
    ],
    "vae": [
        ("condition", str, "none or class.", ()),
        ("latent_dim", int, "Dimension of the latent code.", ()),
        ("width", int, "Channels of the first encoder stage.", ()),
        ("beta", float, "Weight of the KL term (beta-VAE).", ()),
        ("kl_warmup_steps", int, "Steps over which the KL weight rises from 0 to --beta.", ()),
        ("reconstruction", str, "bce or mse.", ()),
    ],
    "classifier": [
        ("label", str, "The index column to predict: label, or e.g. shape or colour.", ()),
        ("arch", str, "auto (small-cnn up to 32 px, else resnet), resnet or small-cnn.", ()),
        ("width", int, "Channels of the first stage.", ()),
        ("dropout", float, "Dropout before the linear head.", ()),
        ("label_smoothing", float, "Label smoothing of the cross-entropy.", ()),
    ],
}

DOCS = {
    "diffusion": (
        "Train a diffusion model (diffusers UNet) from noise to images, conditioned on text, a class or nothing.",
        "pixelforge train diffusion --data data/shapes --out runs/shapes --condition text --max-minutes 20",
    ),
    "gan": (
        "Train a GAN: DCGAN-style generator, spectral-norm discriminator, hinge loss, DiffAugment, EMA.",
        "pixelforge train gan --data data/digits --out runs/gan --condition class --image-size 16 --max-minutes 10",
    ),
    "vae": (
        "Train a convolutional VAE: reconstruction + beta * KL with KL warm-up.",
        "pixelforge train vae --data data/digits --out runs/vae --condition class --image-size 16 --max-minutes 10",
    ),
    "classifier": (
        "Train a CNN classifier on any label column; test accuracy and confusion matrix in result.json.",
        "pixelforge train classifier --data data/shapes --out runs/shape-clf --label shape --epochs 10",
    ),
}

EXTRA_PARAMS = [
    ("config", Annotated[str | None, typer.Option(help="TOML file with [train] and [FAMILY] tables.")], None),
    (
        "allow_opt_out",
        Annotated[bool, typer.Option(help="Train even on opted-out samples (recorded in the run).")],
        False,
    ),
    ("resume", Annotated[bool, typer.Option(help="Continue the run in --out from its latest checkpoint.")], False),
    ("as_json", AsJson, False),
]


def build_configs(
    config_file: str | None, family: str, train_flags: dict[str, Any], family_flags: dict[str, Any]
) -> tuple[TrainConfig, Any]:
    """Defaults (the loop's, then the family's), then the TOML file's [train] and [FAMILY] tables, then flags.

    With --init the model options start from that run's (fine-tuning keeps its network)."""
    from pixelforge.train.families import config_from_saved, family_for
    from pixelforge.train.rundir import RunDir

    family_cls = family_for(family)
    doc = read_tables(config_file, ("train", family), f"use [train] and [{family}]")
    train = dataclasses.replace(TrainConfig(), **family_cls.train_defaults)
    train = fill_config(TrainConfig, train, doc.get("train", {}), train_flags, "--config [train]")
    init = RunDir(train.init).check_init(family_cls.saved_family or family)["model"] if train.init else None
    fam = config_from_saved(family_cls.config_cls, init) if init else family_cls.config_cls()
    fam = fill_config(family_cls.config_cls, fam, doc.get(family, {}), family_flags, f"--config [{family}]")
    if init and "image_size" not in train_flags and "image_size" not in doc.get("train", {}):
        train.image_size = fam.image_size  # the run it starts from sets the resolution
    fam.image_size = train.image_size
    train.family = dataclasses.asdict(fam)
    return train, fam


def _option(name: str, typ: type, help_: str, flags: tuple[str, ...]) -> inspect.Parameter:
    return inspect.Parameter(
        name,
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[typ | None, typer.Option(*flags, help=help_)],
    )


def _make_command(family: str) -> None:
    train_names = [o[0] for o in TRAIN_OPTIONS]
    family_names = [o[0] for o in FAMILY_OPTIONS[family]]

    def command(**kwargs: Any) -> None:
        from pixelforge.train.loop import train

        given = {k: v for k, v in kwargs.items() if v is not None}  # None: not given, TOML or default applies
        train_flags = {k: given[k] for k in train_names if k in given}
        if kwargs["allow_opt_out"]:
            train_flags["allow_opt_out"] = True
        family_flags = {k: given[k] for k in family_names if k in given}
        cfg, fam = build_configs(kwargs["config"], family, train_flags, family_flags)
        result = train(family, cfg, fam, resume=kwargs["resume"])
        if result is not None:  # None: a process of a torchrun group other than rank 0, which reports
            print_result(result, kwargs["as_json"])

    params = [_option(*o) for o in TRAIN_OPTIONS + FAMILY_OPTIONS[family]]
    params += [
        inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=d, annotation=a) for n, a, d in EXTRA_PARAMS
    ]
    command.__signature__ = inspect.Signature(params)
    summary, example = DOCS[family]
    command.__doc__ = f"{summary}\n\nExample:\n\n    {example}\n"
    command.__name__ = f"train_{family}"
    train_app.command(family)(command)


for _family in FAMILY_OPTIONS:
    _make_command(_family)


REWARD_OPTIONS: list[tuple[str, type, str, tuple[str, ...]]] = [
    ("base", str, "The text-to-image run to fine-tune (its best checkpoint).", ()),
    (
        "prompts",
        str,
        "Prompts to tune on: a file with one per line, or a .csv/.jsonl with a prompt column (and the classes "
        "each prompt states).",
        (),
    ),
    (
        "reward",
        list[str],
        "classifier:RUN[:COLUMN], repeatable (every judge finds the class the prompt states; COLUMN: the "
        "prompts file's column holding it), or ratings:PROJECT (a label project's human judgements).",
        (),
    ),
    (
        "rating_features",
        list[str],
        "ratings: the judges classifier:RUN[:COLUMN] whose verdicts the people's choices are fitted on.",
        (),
    ),
    (
        "method",
        str,
        "rwr (reward-weighted regression on its own samples) or draft (DRaFT-K: the reward's gradient "
        "through the last K sampling steps).",
        (),
    ),
    ("anchor", float, "Weight of the weights' squared distance from the base run's.", ()),
    ("data_weight", float, "Weight of the denoising loss on the base run's real training images.", ()),
    (
        "reward_scale",
        float,
        "Rescale the reward's gradient to at most R x the norm of the data loss's (0: add them unscaled).",
        (),
    ),
    ("reward_every", int, "Follow the reward every N steps; the others train on the data alone.", ()),
    ("reward_batch", int, "Images sampled and scored per round (rwr) or step (draft); default --batch-size.", ()),
    ("group", int, "rwr: images of each prompt per round.", ()),
    ("updates", int, "rwr: optimiser steps per batch of scored samples.", ()),
    ("temperature", float, "rwr: softmax temperature of the rewards' logarithms.", ()),
    ("draft_k", int, "draft: sampling steps the gradient goes back through.", ()),
    ("judge_jitter", int, "draft: the judges see each image shifted by up to N pixels, with noise.", ()),
    ("sampler", str, "Sampler of the tuning samples: ddim, ddpm or dpm++.", ()),
    ("sampling_steps", int, "Sampling steps of the tuning samples.", ()),
    ("guidance", float, "Classifier-free guidance of the tuning samples (default: 1 for rwr, 2 for draft).", ()),
]


def train_reward_command(**kwargs: Any) -> None:
    from pixelforge.train.loop import train
    from pixelforge.train.rundir import RunDir

    given = {k: v for k, v in kwargs.items() if v is not None}
    base = given.get("base")
    if not base:
        raise UsageError("--base is required: the text-to-image run to fine-tune")
    run = RunDir(base)
    if not run.has_config() or run.config.get("family") != "diffusion":
        raise UsageError(f"--base {base}: not a diffusion run (train one with `pixelforge train diffusion`)")
    for name in ("prompts", "reward"):
        if not given.get(name):
            raise UsageError(f"--{name} is required (see `pixelforge train reward --help`)")
    train_flags = {k: given[k] for k in (o[0] for o in TRAIN_OPTIONS) if k in given}
    train_flags.setdefault("data", run.config["dataset"]["path"])  # tune beside the data it learnt from
    if "init" in train_flags:
        raise UsageError("--init: train reward starts from --base")
    train_flags["init"] = base
    if kwargs["allow_opt_out"]:
        train_flags["allow_opt_out"] = True
    reward_flags = {k: given[k] for k in (o[0] for o in REWARD_OPTIONS) if k in given}
    cfg, fam = build_configs(kwargs["config"], "reward", train_flags, reward_flags)  # the model: the base's
    if cfg.nproc != 1:
        raise UsageError(f"--nproc {cfg.nproc}: train reward runs in one process")
    result = train("reward", cfg, fam, resume=kwargs["resume"])
    if result is not None:
        print_result(result, kwargs["as_json"])


def _register_reward() -> None:
    params = [_option(*o) for o in REWARD_OPTIONS + [o for o in TRAIN_OPTIONS if o[0] != "init"]]
    params += [
        inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=d, annotation=a) for n, a, d in EXTRA_PARAMS
    ]
    train_reward_command.__signature__ = inspect.Signature(params)
    train_reward_command.__doc__ = (
        "Fine-tune a text-to-image run toward a reward: judges' verdicts or people's ratings.\n\n"
        "The result is an ordinary diffusion run (generate, verify, evaluate and report take it); its "
        "config.json names the base run, the reward and the method.\n\nExample:\n\n"
        "    pixelforge train reward --base runs/shapes --out runs/shapes-tuned --prompts prompts.csv "
        "--reward classifier:runs/shape-judge --reward classifier:runs/colour-judge:colour --max-minutes 5\n"
    )
    train_app.command("reward")(train_reward_command)


_register_reward()


vae_app = typer.Typer(help="Use a trained VAE: latent codes and interpolations.", no_args_is_help=True)
Run = Annotated[str, typer.Argument(help="Training run directory.")]
Data = Annotated[str, typer.Option(help="Dataset directory.")]
Checkpoint = Annotated[str, typer.Option(help="best or latest.")]
Device = Annotated[str, typer.Option(help="auto (CUDA when present), cpu, cuda, cuda:N, mps.")]


def predict_command(
    run: Run,
    data: Data,
    out: Annotated[str, typer.Option("--out", "-o", help="Parquet file to write.")],
    batch_size: Annotated[int, typer.Option()] = 256,
    checkpoint: Checkpoint = "best",
    device: Device = "auto",
    as_json: AsJson = False,
) -> None:
    """Classify every sample of a dataset: key, predicted, predicted_id, confidence, target (the true value).

    The file feeds `pixelforge audit --predictions`; accuracy over samples with a known target is printed.

    Example:

        pixelforge predict runs/shape-clf --data data/shapes --out shape_predictions.parquet
    """
    from pixelforge.train.inference import predict

    print_result(predict(run, data, out, batch_size, checkpoint, device), as_json)


@vae_app.command("encode")
def vae_encode_command(
    run: Run,
    data: Data,
    out: Annotated[str, typer.Option("--out", "-o", help="Parquet file to write (key, label, mu, logvar).")],
    batch_size: Annotated[int, typer.Option()] = 256,
    checkpoint: Checkpoint = "best",
    device: Device = "auto",
    as_json: AsJson = False,
) -> None:
    """Write every sample's latent code (the mean and log-variance of q(z|x)).

    Example:

        pixelforge vae encode runs/vae --data data/digits --out latents.parquet
    """
    from pixelforge.train.inference import vae_encode

    print_result(vae_encode(run, data, out, batch_size, checkpoint, device), as_json)


@vae_app.command("interpolate")
def vae_interpolate_command(
    run: Run,
    data: Data,
    key_from: Annotated[str, typer.Option("--from", help="Key of the first sample.")],
    key_to: Annotated[str, typer.Option("--to", help="Key of the last sample.")],
    out: Annotated[str, typer.Option("--out", "-o", help="PNG strip to write.")],
    steps: Annotated[int, typer.Option(help="Images in the strip, both ends included.")] = 8,
    checkpoint: Checkpoint = "best",
    device: Device = "auto",
    as_json: AsJson = False,
) -> None:
    """Decode points on the line between two samples' latent codes into a PNG strip.

    Example:

        pixelforge vae interpolate runs/vae --data data/digits --from 000000003 --to 000000010 --out strip.png
    """
    from pixelforge.train.inference import vae_interpolate

    print_result(vae_interpolate(run, data, key_from, key_to, out, steps, checkpoint, device), as_json)


def register(app: typer.Typer) -> None:
    """Add `train`, `predict` and `vae` to ``app``."""
    app.add_typer(train_app, name="train", rich_help_panel=TRAIN)
    app.command("predict", rich_help_panel=TRAIN)(predict_command)
    app.add_typer(vae_app, name="vae", rich_help_panel=TRAIN)
