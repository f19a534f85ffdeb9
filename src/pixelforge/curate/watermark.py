"""The watermark detector: a small CNN, its shipped safetensors weights, and batched CPU scoring."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from pixelforge.curate.quality import letterbox
from pixelforge.errors import UsageError

WEIGHTS = Path(__file__).resolve().parent / "weights" / "watermark_detector.safetensors"


@dataclass(frozen=True)
class DetectorConfig:
    """Architecture and input of the detector; saved in the safetensors metadata beside the weights."""

    input_size: int = 128  # images are letterboxed (media.resize "pad") to this square: corners stay visible
    widths: tuple[int, ...] = (16, 32, 32, 64, 64, 128)
    strides: tuple[int, ...] = (2, 2, 1, 2, 1, 2)
    threshold: float = 0.5  # q_watermark above this counts as watermarked in the reported P/R


class WatermarkNet(nn.Module):
    """Conv-BN-ReLU stack, then global average AND max pooling into one logit.

    Max pooling matters: a corner watermark covers a few percent of the image, and an average
    alone would dilute its evidence by the clean remainder.
    """

    def __init__(self, config: DetectorConfig = DetectorConfig()):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for c_out, stride in zip(config.widths, config.strides):
            layers += [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(2 * c_in, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, 3, S, S) in [-1, 1]  ->  logits: (B,)
        f = self.features(x)  # (B, C, S/16, S/16)
        pooled = torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1)  # (B, 2C)
        return self.head(pooled).squeeze(1)


def to_input(img: Image.Image, size: int) -> np.ndarray:
    """One image as the detector sees it: RGB letterboxed to size x size, uint8 (size, size, 3)."""
    return letterbox(img, size)


def batch_to_tensor(batch: np.ndarray) -> torch.Tensor:
    """uint8 (B, S, S, 3) -> float (B, 3, S, S) in [-1, 1]."""
    return torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


def save_detector(model: WatermarkNet, config: DetectorConfig, path: Path, metrics: dict | None = None) -> None:
    """Write the weights as safetensors with the config (and evaluation metrics) in its metadata."""
    from safetensors.torch import save_file

    tensors = {
        k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")
    }
    meta = {"config": json.dumps(asdict(config)), "metrics": json.dumps(metrics or {}), "format": "pt"}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=meta)


class WatermarkDetector:
    """The shipped detector, loaded once per process; ``score`` gives P(watermarked) per image."""

    def __init__(self, path: Path | str = WEIGHTS, batch_size: int = 64):
        from safetensors import safe_open
        from safetensors.torch import load_file

        path = Path(path)
        if not path.exists():
            raise UsageError(
                f"watermark detector weights {path} are missing: reinstall pixelforge or run "
                "scripts/train_watermark_detector.py to make them"
            )
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        raw = json.loads(meta.get("config", "{}"))
        self.config = DetectorConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
        self.metrics = json.loads(meta.get("metrics", "{}"))
        self.model = WatermarkNet(self.config)
        state = load_file(str(path))
        self.model.load_state_dict(state, strict=False)  # num_batches_tracked is not shipped
        missing = (
            set(self.model.state_dict())
            - set(state)
            - {k for k in self.model.state_dict() if k.endswith("num_batches_tracked")}
        )
        if missing:
            raise UsageError(
                f"watermark detector weights {path} lack {sorted(missing)[:3]}: "
                "re-run scripts/train_watermark_detector.py"
            )
        self.model.eval()
        self.batch_size = batch_size

    @torch.inference_mode()
    def score_arrays(self, batch: np.ndarray) -> np.ndarray:
        """Scores for uint8 inputs (B, S, S, 3) already made by :func:`to_input`; float32 (B,)."""
        out = []
        for i in range(0, len(batch), self.batch_size):
            logits = self.model(batch_to_tensor(batch[i : i + self.batch_size]))
            out.append(torch.sigmoid(logits).numpy())
        return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)

    def score(self, images: Sequence[Image.Image]) -> np.ndarray:
        """P(watermarked) in [0, 1] for each PIL image, float32 (len(images),)."""
        if not images:
            return np.zeros(0, np.float32)
        return self.score_arrays(np.stack([to_input(im, self.config.input_size) for im in images]))


_CACHED: dict[str, WatermarkDetector] = {}


def detector(path: Path | str = WEIGHTS) -> WatermarkDetector:
    """The detector for ``path``, loaded on first use in this process and kept."""
    key = str(path)
    if key not in _CACHED:
        _CACHED[key] = WatermarkDetector(path)
    return _CACHED[key]
