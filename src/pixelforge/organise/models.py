"""The models an embedding is made with: ``pixels``, ``classifier:RUN``, ``clip:DIR`` and ``inception[:WEIGHTS]``.

Every model takes RGB images and returns one float32 vector per image. None downloads anything:
a classifier is a run trained here, a CLIP model is a folder the user supplies (open_clip's or
transformers' ``save_pretrained`` layout read with transformers, local files only), the FID
Inception weights are the file `pixelforge evaluate` uses (--model inception:PATH, else
$PIXELFORGE_INCEPTION_WEIGHTS or the torch hub cache; never downloaded here).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pixelforge import media
from pixelforge.errors import UsageError
from pixelforge.extras import require

PIXELS_SIDE = 16  # pixels: a 16x16 RGB thumbnail, 768 numbers


@dataclass(frozen=True)
class ModelSpec:
    kind: str  # pixels | classifier | clip
    path: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        kind, _, path = text.partition(":")
        if kind == "pixels" and not path:
            return cls("pixels")
        if kind == "inception":
            if path and not Path(path).is_file():
                raise UsageError(f"--model {text}: {path} is not a file (the FID Inception weights)")
            require("eval", "--model inception")
            return cls("inception", path or None)
        if kind in ("classifier", "clip") and path:
            if not Path(path).exists():
                raise UsageError(f"--model {text}: {path} does not exist")
            require("train", f"--model {kind}:DIR")
            return cls(kind, path)
        raise UsageError(
            f"--model {text!r}: choose pixels, classifier:RUN (a trained classifier), clip:DIR or inception[:WEIGHTS]"
        )

    def __str__(self) -> str:
        return self.kind if self.path is None else f"{self.kind}:{self.path}"


class Pixels:
    """A 16x16 center-cropped RGB thumbnail in [0, 1]: finds exact and resized copies, colour and layout."""

    size = PIXELS_SIDE

    def embed(self, images: list[Image.Image]) -> np.ndarray:
        arrays = [np.asarray(media.resize(im, PIXELS_SIDE, "center_crop"), dtype=np.float32) for im in images]
        return (np.stack(arrays).reshape(len(images), -1) / 255.0).astype(np.float32)

    def describe(self) -> dict[str, Any]:
        return {"model": "pixels", "side": PIXELS_SIDE}


class ClassifierFeatures:
    """The penultimate layer of a classifier trained by `pixelforge train classifier`."""

    def __init__(self, run: str, device: str = "auto"):

        from pixelforge.device import resolve_device
        from pixelforge.train.rundir import load_run

        _one_thread_in_a_worker()
        self.device = resolve_device(device)
        self.run = load_run(run, "best", self.device, family="classifier")
        self.size = int(self.run.config["model"]["image_size"])

    def embed(self, images: list[Image.Image]) -> np.ndarray:
        import torch

        arrays = np.stack([np.asarray(media.resize(im, self.size, "center_crop"), dtype=np.uint8) for im in images])
        x = torch.from_numpy(arrays).permute(0, 3, 1, 2).float().div_(255).to(self.device)
        with torch.inference_mode():
            return self.run.model.features(x).float().cpu().numpy()

    def describe(self) -> dict[str, Any]:
        return {"model": "classifier", "run": self.run.run_id, "image_size": self.size}


class Clip:
    """A CLIP image tower from a local folder (transformers' CLIPModel and its image processor)."""

    def __init__(self, folder: str, device: str = "auto"):
        from transformers import CLIPImageProcessor, CLIPModel

        from pixelforge.device import resolve_device

        _one_thread_in_a_worker()
        self.device = resolve_device(device)
        try:
            self.model = CLIPModel.from_pretrained(folder, local_files_only=True).to(self.device).eval()
            self.processor = CLIPImageProcessor.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise UsageError(f"--model clip:{folder}: not a CLIP model folder ({exc})"[:300]) from None
        self.folder = folder

    def embed(self, images: list[Image.Image]) -> np.ndarray:
        import torch

        pixels = self.processor(images=images, return_tensors="pt")["pixel_values"].to(self.device)
        with torch.inference_mode():
            out = self.model.get_image_features(pixel_values=pixels)
        out = getattr(out, "pooler_output", out)  # a tensor, or an output object in newer transformers
        return out.float().cpu().numpy()

    def describe(self) -> dict[str, Any]:
        return {"model": "clip", "folder": str(Path(self.folder).resolve())}


class Inception:
    """The 2048-d pool features of the FID Inception network (evaluate's, torch-fidelity's input convention)."""

    def __init__(self, weights: str | None, device: str = "auto"):
        import torch

        from pixelforge.device import resolve_device
        from pixelforge.evaluate.inception import InceptionFeatures, find_weights

        _one_thread_in_a_worker()
        self.device = resolve_device(device)
        self.model = InceptionFeatures(find_weights(weights))
        self.model.net.to(self.device)
        self._torch = torch

    def embed(self, images: list[Image.Image]) -> np.ndarray:
        torch = self._torch
        side = max(max(im.size) for im in images)
        arrays = np.stack([np.asarray(media.resize(im, side, "center_crop"), dtype=np.uint8) for im in images])
        x = torch.from_numpy(arrays).permute(0, 3, 1, 2).float().div_(255).to(self.device)
        return self.model.features(x).cpu().numpy()

    def describe(self) -> dict[str, Any]:
        return {"model": "inception", "weights": self.model.name}


def _one_thread_in_a_worker() -> None:
    """In a pool worker (one per core already), torch uses one thread: its default, every core, oversubscribes."""
    import multiprocessing

    import torch

    if multiprocessing.parent_process() is not None:
        torch.set_num_threads(1)


_loaded: dict[tuple[str, str], Any] = {}


def load(spec: ModelSpec, device: str = "auto") -> Pixels | ClassifierFeatures | Clip | Inception:
    """The model of ``spec``, loaded once per process."""
    key = (str(spec), device)
    if key not in _loaded:
        if spec.kind == "pixels":
            _loaded[key] = Pixels()
        elif spec.kind == "classifier":
            _loaded[key] = ClassifierFeatures(spec.path or "", device)
        elif spec.kind == "inception":
            _loaded[key] = Inception(spec.path, device)
        else:
            _loaded[key] = Clip(spec.path or "", device)
    return _loaded[key]
