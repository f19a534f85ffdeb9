"""CNN classifiers: a ResNet-18-shaped network sized to the image, and a small CNN for 8-32 px images.

Both take images in [0, 1] (B, 3, S, S) and normalise them inside, so anything that reads images
the usual way (evaluate's feature extractor, `pixelforge predict`) can call them directly:
``forward(x)`` gives logits (B, K), ``features(x)`` the penultimate features (B, D).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from pixelforge.errors import UsageError

ARCHS = ("auto", "resnet", "small-cnn")


@dataclass
class ClassifierConfig:
    """What defines a classifier (saved in the run's config.json)."""

    arch: str = "auto"  # auto: small-cnn up to 32 px, resnet above
    label: str = "label"  # the index column to predict
    image_size: int = 32
    width: int = 32  # channels of the first stage (doubled at each later stage)
    dropout: float = 0.1
    label_smoothing: float = 0.0
    num_classes: int = 0
    labels: list[str] = field(default_factory=list)

    def validate(self) -> None:
        if self.arch not in ARCHS:
            raise UsageError(f"--arch {self.arch!r}: choose one of {', '.join(ARCHS)}")
        if self.image_size < 8:
            raise UsageError(f"--image-size {self.image_size}: classifiers need at least 8 px")
        if self.width < 4:
            raise UsageError(f"--width {self.width}: must be at least 4")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise UsageError(f"--label-smoothing {self.label_smoothing}: choose a value in [0, 1)")
        if not 0.0 <= self.dropout < 1.0:
            raise UsageError(f"--dropout {self.dropout}: choose a value in [0, 1)")

    @property
    def resolved_arch(self) -> str:
        if self.arch != "auto":
            return self.arch
        return "small-cnn" if self.image_size <= 32 else "resnet"


class _Normalise(nn.Module):
    """[0, 1] -> roughly zero-mean, unit-variance inputs (fixed, not learnt)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - 0.5) / 0.25


def _conv_bn(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class _Classifier(nn.Module):
    """A body to penultimate features (``dim`` wide) and a linear head."""

    body: nn.Module
    head: nn.Module

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class SmallCNN(_Classifier):
    """One to three conv-conv-pool stages (halving down to ~4 px), global average pooling, a linear head."""

    def __init__(self, num_classes: int, image_size: int, width: int = 32, dropout: float = 0.1):
        super().__init__()
        layers: list[nn.Module] = [_Normalise()]
        stages = max(1, min(3, int(math.log2(max(image_size // 4, 1)))))  # 8 px: 1, 16 px: 2, 32 px+: 3
        cin = 3
        for s in range(stages):
            c = width * 2**s
            layers += _conv_bn(cin, c) + _conv_bn(c, c) + [nn.MaxPool2d(2)]
            cin = c
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.dim = cin
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(cin, num_classes))


class _Basic(nn.Module):
    """ResNet basic block: two 3x3 convolutions and a shortcut (1x1 when the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.short = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x) + self.short(x))


class ResNet18(_Classifier):
    """ResNet-18's shape (four stages of two basic blocks) with a stem sized to the image.

    Up to 64 px the stem is one stride-1 3x3 convolution (as for CIFAR); above, ImageNet's
    stride-2 7x7 convolution and max-pool, so the last stage always sees 4-8 px maps.
    """

    def __init__(self, num_classes: int, image_size: int, width: int = 64, dropout: float = 0.0):
        super().__init__()
        if image_size <= 64:
            stem = _conv_bn(3, width)
        else:
            stem = [
                nn.Conv2d(3, width, 7, 2, 3, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(3, 2, 1),
            ]
        blocks: list[nn.Module] = []
        cin = width
        for i, mult in enumerate((1, 2, 4, 8)):
            cout = width * mult
            blocks += [_Basic(cin, cout, 1 if i == 0 else 2), _Basic(cout, cout, 1)]
            cin = cout
        self.body = nn.Sequential(_Normalise(), *stem, *blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.dim = cin
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(cin, num_classes))


def build_classifier(cfg: ClassifierConfig) -> nn.Module:
    if cfg.num_classes < 2:
        raise UsageError(
            f"the label column {cfg.label!r} has {cfg.num_classes} distinct value(s); a classifier needs at least 2"
        )
    if cfg.resolved_arch == "small-cnn":
        return SmallCNN(cfg.num_classes, cfg.image_size, cfg.width, cfg.dropout)
    return ResNet18(cfg.num_classes, cfg.image_size, cfg.width, cfg.dropout)
