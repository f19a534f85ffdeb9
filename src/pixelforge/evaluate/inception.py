"""The FID-standard InceptionV3 feature extractor: where its weights come from, and its two resize conventions."""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pixelforge.errors import UsageError

# pytorch-fid's name for the TensorFlow 2015-12-05 weights ported to PyTorch; torch-fidelity ships
# the same tensors under its own name. Both are looked for in the torch hub cache.
WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
FIDELITY_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + WEIGHTS_FILE
WEIGHTS_HASH_PREFIX = "6726825d"
WEIGHTS_ENV = "PIXELFORGE_INCEPTION_WEIGHTS"

DIMS = (64, 192, 768, 2048)
FID_IMPLS = ("torch-fidelity", "pytorch-fid")
INPUT_SIZE = 299
# Layers of torchvision's Inception3 in forward order, and after which one each feature size is read.
_LAYERS = (
    "Conv2d_1a_3x3",
    "Conv2d_2a_3x3",
    "Conv2d_2b_3x3",
    "maxpool1",
    "Conv2d_3b_1x1",
    "Conv2d_4a_3x3",
    "maxpool2",
    "Mixed_5b",
    "Mixed_5c",
    "Mixed_5d",
    "Mixed_6a",
    "Mixed_6b",
    "Mixed_6c",
    "Mixed_6d",
    "Mixed_6e",
    "Mixed_7a",
    "Mixed_7b",
    "Mixed_7c",
)
_LAST_LAYER = {64: "maxpool1", 192: "maxpool2", 768: "Mixed_6e", 2048: "Mixed_7c"}


def resize_like_tensorflow1x(x: torch.Tensor, size: int) -> torch.Tensor:
    """TensorFlow 1.x bilinear resize (align_corners=False) of (B, C, H, W) floats to (B, C, size, size).

    Bit-for-bit torch-fidelity's ``interpolate_bilinear_2d_like_tensorflow1x`` (method "slow"),
    whose every output is lo + (hi - lo) * d on the same operands; we interpolate along x on the
    H input rows first and gather rows after, instead of gathering four 299 x 299 corner maps
    with advanced indexing: 3x faster on CPU, equal to the last bit (tested).

    1. source coordinate of output i: g_i = i * (in / out); lo = floor(g), hi = min(lo + 1, in - 1), d = g - lo
    2. cols = x[..., lo_x] + (x[..., hi_x] - x[..., lo_x]) * d_x            (B, C, H, size)
    3. out = cols[:, :, lo_y] + (cols[:, :, hi_y] - cols[:, :, lo_y]) * d_y  (B, C, size, size)
    """

    def axis(n_in: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        grid = torch.arange(0, size, 1, dtype=x.dtype, device=x.device) * torch.tensor(n_in / size, dtype=torch.float32)
        lo = grid.long()
        return lo, (lo + 1).clamp_max(n_in - 1), grid - lo.float()

    lo_y, hi_y, d_y = axis(x.shape[2])
    lo_x, hi_x, d_x = axis(x.shape[3])
    left = x[..., lo_x]
    cols = left + (x[..., hi_x] - left) * d_x
    top = cols.index_select(2, lo_y)
    return top + (cols.index_select(2, hi_y) - top) * d_y.view(-1, 1)


def hub_weights_paths() -> list[Path]:
    """Where the torch hub cache would hold the weights (pytorch-fid's and torch-fidelity's names)."""
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    return [checkpoints / WEIGHTS_FILE, checkpoints / FIDELITY_WEIGHTS_FILE]


def find_weights(path: str | None = None, download: bool = False) -> Path:
    """Locate the Inception weights: ``path``, then $PIXELFORGE_INCEPTION_WEIGHTS, then the torch hub cache.

    Nothing is fetched unless ``download`` is true; then a missing file is downloaded once into the
    hub cache (its SHA-256 prefix checked). Raises UsageError naming the file and the three places.
    """
    if path:
        if not Path(path).is_file():
            raise UsageError(f"--inception-weights {path}: no such file; pass the path of {WEIGHTS_FILE}")
        return Path(path)
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        if not Path(env).is_file():
            raise UsageError(f"${WEIGHTS_ENV}={env}: no such file; point it at {WEIGHTS_FILE}")
        return Path(env)
    for candidate in hub_weights_paths():
        if candidate.is_file():
            return candidate
    target = hub_weights_paths()[0]
    if download:
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(WEIGHTS_URL, str(target), hash_prefix=WEIGHTS_HASH_PREFIX)
        return target
    raise UsageError(
        f"Inception weights {WEIGHTS_FILE} not found: pass --inception-weights PATH, set "
        f"${WEIGHTS_ENV}, or put it in the torch hub cache ({target.parent}); "
        "--download fetches it there once"
    )


def build_fid_inception() -> nn.Module:
    """pytorch-fid's FID Inception network (torchvision Inception3 with the TF-compatible blocks), no weights.

    The same construction as ``pytorch_fid.inception.fid_inception_v3`` without its download;
    tests save this network's state dict as a stand-in weights file of the official format.
    """
    from pytorch_fid.inception import (
        FIDInceptionA,
        FIDInceptionC,
        FIDInceptionE_1,
        FIDInceptionE_2,
        _inception_v3,
    )

    net = _inception_v3(num_classes=1008, aux_logits=False, weights=None)
    net.Mixed_5b = FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = FIDInceptionE_1(1280)
    net.Mixed_7c = FIDInceptionE_2(2048)
    return net.eval()


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The weights file's tensors, read with torch's safe (tensors-only) unpickler."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated file, a pickle with code, not a torch file at all
        raise UsageError(
            f"{path} is not a readable {WEIGHTS_FILE} ({type(e).__name__}); re-download it with --download"
        ) from None


def _fold_batch_norm(net: nn.Module) -> None:
    """Fold each BasicConv2d's eval-mode BatchNorm into its convolution (one op fewer per layer).

    Changes features by float32 rounding only (~1e-6 relative) and saves a pass over every
    activation map of the 94 convolutions.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for module in net.modules():
        if isinstance(getattr(module, "conv", None), nn.Conv2d) and isinstance(
            getattr(module, "bn", None), nn.BatchNorm2d
        ):
            module.conv = fuse_conv_bn_eval(module.conv, module.bn)
            module.bn = nn.Identity()


@functools.lru_cache(maxsize=2)
def _prepared_network(path: str, size: int, mtime_ns: int, fold_bn: bool) -> tuple[nn.Module, str]:
    """The loaded, folded, channels_last network and the weights' short SHA-256, once per file version.

    Every layer size and both conventions share it (it holds no per-call state), so repeated
    evaluations in one process load the 95 MB file once. The network is built on the meta device
    and the file's tensors are assigned, skipping a random initialisation that would be overwritten.
    """
    with torch.device("meta"):
        net = build_fid_inception()
    state = load_state_dict(Path(path))
    try:
        net.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as e:  # missing, unexpected or mis-shaped tensors
        first = str(e).split("\n")[1].strip() if "\n" in str(e) else str(e)
        raise UsageError(f"{path} is not an FID Inception state dict ({first[:120]}); pass {WEIGHTS_FILE}") from None
    if fold_bn:
        _fold_batch_norm(net)
    net = net.eval().to(memory_format=torch.channels_last).requires_grad_(False)  # oneDNN's fastest CPU convs
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]
    return net, digest


class InceptionFeatures:
    """FID Inception features (64, 192, 768 or 2048-d) and 1008-class logits, as a FeatureModel.

    ``impl`` picks the reference whose numbers we reproduce; the network is the same, the input
    convention differs:
    - torch-fidelity (the TensorFlow original): pixels 0..255, TF1.x bilinear resize to 299
      (bit-exact torch-fidelity's, see resize_like_tensorflow1x), then (x - 128) / 128;
    - pytorch-fid: pixels 0..1, torch bilinear resize to 299 (align_corners=False, no antialias),
      then 2x - 1.
    Logits are the unbiased ones (pool3 times the fc weights, no bias), as torch-fidelity and the
    original Inception Score code use.
    """

    input_size = INPUT_SIZE
    label_names = None

    def __init__(self, weights: Path, dims: int = 2048, impl: str = "torch-fidelity", fold_bn: bool = True):
        if dims not in DIMS:
            raise UsageError(f"--dims {dims}: choose one of {', '.join(map(str, DIMS))}")
        if impl not in FID_IMPLS:
            raise UsageError(f"--fid-impl {impl!r}: choose one of {', '.join(FID_IMPLS)}")
        self.dims, self.impl, self.weights = dims, impl, Path(weights)
        st = self.weights.stat()
        self.net, digest = _prepared_network(str(self.weights.resolve()), st.st_size, st.st_mtime_ns, fold_bn)
        self.name = f"inception-{impl}-{digest}"
        self.layer = str(dims)

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, 3, 299, 299) in the network's input range."""
        if self.impl == "pytorch-fid":
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
            x = 2 * x - 1
        else:
            # round: [0, 1] floats from 8-bit images map back onto exactly the integers torch-fidelity sees
            x = resize_like_tensorflow1x((x * 255).round(), INPUT_SIZE)
            x = (x - 128) / 128
        return x.contiguous(memory_format=torch.channels_last)

    def features_and_logits(self, x: torch.Tensor, logits: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Features (B, dims) and, when asked, unbiased logits (B, 1008) from one forward pass."""
        h = self._prepare(x)
        read_at = _LAST_LAYER[self.dims]
        stop_at = "Mixed_7c" if logits else read_at
        feats = out_logits = None
        with torch.inference_mode():
            for name in _LAYERS:
                h = getattr(self.net, name)(h)
                if name == read_at:
                    feats = F.adaptive_avg_pool2d(h, (1, 1)).flatten(1)  # (B, C, h, w) -> (B, dims)
                if name == stop_at:
                    break
            if logits:
                pool3 = F.adaptive_avg_pool2d(h, (1, 1)).flatten(1)  # (B, 2048)
                out_logits = pool3 @ self.net.fc.weight.T  # (B, 1008)
        return feats.float().contiguous(), out_logits

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Features (B, dims) of images (B, 3, H, W) in [0, 1]."""
        return self.features_and_logits(x, logits=False)[0]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Unbiased 1008-class logits (B, 1008) of images (B, 3, H, W) in [0, 1]."""
        return self.features_and_logits(x, logits=True)[1]
