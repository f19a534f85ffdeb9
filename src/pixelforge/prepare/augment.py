"""Augmentation SPEC strings parsed into torchvision.transforms.v2 pipelines (prepare and training)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image

from pixelforge.errors import UsageError

# op -> (default value when written bare, lowest allowed, highest allowed, what the value means).
# The order here is the order ops run in, whatever order the SPEC lists them: geometry first,
# then photometric changes, so a crop never cuts off a colour change and results do not depend
# on how the user happened to write the SPEC.
OPS: dict[str, tuple[float | None, float, float, str]] = {
    "hflip": (0.5, 0.0, 1.0, "probability of a left-right flip"),
    "vflip": (0.5, 0.0, 1.0, "probability of an up-down flip"),
    "rotate": (None, 0.0, 180.0, "rotation drawn from [-DEG, DEG] degrees"),
    "translate": (None, 0.0, 0.5, "shift up to this fraction of width/height"),
    "crop": (None, 0.05, 1.0, "random crop keeping [S, 1] of the area, resized back to the input size"),
    "brightness": (None, 0.0, 1.0, "brightness factor drawn from [1-B, 1+B]"),
    "contrast": (None, 0.0, 1.0, "contrast factor drawn from [1-C, 1+C]"),
    "saturation": (None, 0.0, 1.0, "saturation factor drawn from [1-S, 1+S]"),
    "hue": (None, 0.0, 0.5, "hue shift drawn from [-H, H] (fraction of the colour wheel)"),
    "jitter": (None, 0.0, 1.0, "colour jitter: saturation J and hue J/2 (brightness/contrast are their own ops)"),
    "grayscale": (0.1, 0.0, 1.0, "probability of turning the image grey (kept 3-channel)"),
    "blur": (None, 0.1, 10.0, "Gaussian blur with sigma drawn from [0.1, SIGMA]"),
}
NONE_SPECS = ("", "none")


def allowed_ops() -> str:
    """The one-line grammar used in error messages: every op with its value range."""
    return ", ".join(
        f"{name}{'[' if d is not None else ''}={lo:g}..{hi:g}{']' if d is not None else ''}"
        for name, (d, lo, hi, _) in OPS.items()
    )


def describe_ops() -> str:
    """Every op, its value range and what the value means, one per line (for docs and help)."""
    return "\n".join(
        f"{name}: {lo:g}..{hi:g}, {what}" + (f" (bare: {d:g})" if d is not None else "")
        for name, (d, lo, hi, what) in OPS.items()
    )


@dataclass(frozen=True)
class SameSizeResizedCrop:
    """v2.RandomResizedCrop whose output size is the input's own size (SPEC ops are size-free)."""

    min_scale: float

    def __call__(self, img: Image.Image) -> Image.Image:
        from torchvision.transforms import v2

        w, h = img.size
        # aspect ratio of the crop stays that of the image: a crop must not squash the content
        crop = v2.RandomResizedCrop((h, w), scale=(self.min_scale, 1.0), ratio=(w / h, w / h), antialias=True)
        return crop(img)


class Augment:
    """A parsed SPEC: call it on a PIL image to get an augmented PIL image (RGB in, RGB out).

    Randomness comes from torch's global generator, so ``torch.manual_seed`` fixes the output.
    Picklable, so DataLoader workers can hold one.
    """

    def __init__(self, spec: str, params: dict[str, float]):
        self.spec = spec
        self.params = params
        self.pipeline = _build(params)

    def __call__(self, img: Image.Image) -> Image.Image:
        if self.pipeline is None:
            return img
        if img.mode != "RGB":
            img = img.convert("RGB")
        return self.pipeline(img)

    def __repr__(self) -> str:
        return f"Augment({self.spec!r})"


def parse_params(spec: str) -> dict[str, float]:
    """Parse and validate ``spec`` into ``{op: value}`` (bare ops take their default value).

    Raises UsageError naming the bad part and the allowed ops.
    """
    if not isinstance(spec, str):
        raise UsageError(f"--augment {spec!r}: must be a string such as 'hflip,rotate=10'")
    text = spec.strip()
    if text.lower() in NONE_SPECS:
        return {}
    params: dict[str, float] = {}
    for part in text.split(","):
        part = part.strip()
        name, eq, raw = part.partition("=")
        name = name.strip().lower()
        if name not in OPS:
            raise UsageError(f"--augment {spec!r}: unknown op {name or part!r}; allowed ops: {allowed_ops()}")
        if name in params:
            raise UsageError(f"--augment {spec!r}: op {name!r} given twice; give each op once")
        default, lo, hi, _ = OPS[name]
        if not eq:
            if default is None:
                raise UsageError(f"--augment {spec!r}: op {name!r} needs a value, such as {name}={hi / 4:g}")
            value = default
        else:
            try:
                value = float(raw)
            except ValueError:
                raise UsageError(f"--augment {spec!r}: {name}={raw!r} is not a number") from None
        if not lo <= value <= hi:
            raise UsageError(f"--augment {spec!r}: {name}={value:g} is outside {lo:g}..{hi:g}")
        params[name] = value
    return params


def _build(params: dict[str, float]):
    """The v2.Compose for ``params``, or None when there is nothing to do."""
    if not params:
        return None
    from torchvision.transforms import v2

    steps: list[Callable] = []
    if "hflip" in params:
        steps.append(v2.RandomHorizontalFlip(p=params["hflip"]))
    if "vflip" in params:
        steps.append(v2.RandomVerticalFlip(p=params["vflip"]))
    if "rotate" in params or "translate" in params:
        t = params.get("translate", 0.0)
        steps.append(
            v2.RandomAffine(
                degrees=params.get("rotate", 0.0),
                translate=(t, t) if t else None,
                interpolation=v2.InterpolationMode.BILINEAR,
            )
        )
    if "crop" in params:
        steps.append(SameSizeResizedCrop(params["crop"]))
    saturation = params.get("saturation", params.get("jitter", 0.0))
    hue = params.get("hue", params.get("jitter", 0.0) / 2)
    if any(params.get(k) for k in ("brightness", "contrast")) or saturation or hue:
        steps.append(
            v2.ColorJitter(
                brightness=params.get("brightness", 0.0),
                contrast=params.get("contrast", 0.0),
                saturation=saturation,
                hue=hue,
            )
        )
    if "grayscale" in params:
        steps.append(v2.RandomGrayscale(p=params["grayscale"]))
    if "blur" in params:
        steps.append(v2.GaussianBlur(kernel_size=5, sigma=(0.1, params["blur"])))
    return v2.Compose(steps) if steps else None


def parse_spec(spec: str) -> Callable[[Image.Image], Image.Image]:
    """Turn an augmentation SPEC into a callable PIL -> PIL (a torchvision v2 pipeline).

    Grammar: ``SPEC := "" | "none" | OP ("," OP)*``, ``OP := NAME | NAME "=" NUMBER``. Ops
    (value range and meaning): hflip[=P] and vflip[=P] (flip probability, default 0.5);
    rotate=DEG (0..180); translate=F (0..0.5 of the side); crop=S (keep [S, 1] of the area,
    resized back to the input size); brightness=B, contrast=C, saturation=S (factors in
    [1-x, 1+x]); hue=H (0..0.5); jitter=J (saturation J and hue J/2); grayscale[=P]
    (default 0.1); blur=SIGMA (0.1..10). Ops run in that fixed order whatever order they are
    written in; each op may appear once. The output keeps the input's size.

    Example: ``parse_spec("hflip,rotate=10,crop=0.9,brightness=0.2,contrast=0.2,jitter=0.1")``.
    Raises UsageError for an unknown op, a missing or out-of-range value, or a repeated op.
    """
    return Augment(spec, parse_params(spec))
