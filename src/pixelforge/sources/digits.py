"""scikit-learn's bundled 8x8 handwritten digits: a small real dataset that needs no download."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pyarrow as pa
from PIL import Image

from pixelforge.errors import UsageError
from pixelforge.sources.base import Failure, Record

# The UCI Optical Recognition of Handwritten Digits data as scikit-learn ships it.
DIGITS_LICENSE = "cc-by-4.0"
DIGITS_LICENSE_URL = "https://creativecommons.org/licenses/by/4.0/"
DIGITS_ATTRIBUTION = (
    "E. Alpaydin, C. Kaynak: Optical Recognition of Handwritten Digits, "
    "UCI Machine Learning Repository (via scikit-learn)"
)


@dataclass
class DigitsSource:
    """The 1,797 digits (values 0-16 on 8x8), as white-on-black images upscaled to ``size``.

    Upscaling is bicubic from 8 px: the strokes stay soft, as in the original scans.
    """

    size: int = 8
    kind: ClassVar[str] = "digits"
    extra_fields: ClassVar[tuple[pa.Field, ...]] = ()

    def validate(self) -> None:
        if not 8 <= self.size <= 512:
            raise UsageError(f"--size {self.size}: choose a side between 8 and 512 pixels")

    def count(self) -> int | None:
        return 1797

    def records(self) -> Iterator[Record | Failure]:
        from sklearn.datasets import load_digits

        digits = load_digits()
        for i, (pixels, label) in enumerate(zip(digits.images, digits.target)):
            # 0..16 ink levels -> 0..255 grey
            grey = np.clip(np.rint(pixels * (255.0 / 16.0)), 0, 255).astype(np.uint8)
            if self.size != 8:
                grey = np.asarray(Image.fromarray(grey, mode="L").resize((self.size, self.size), Image.BICUBIC))
            yield Record(
                source=f"sklearn.datasets.load_digits#{i}",
                image=grey,
                label=int(label),
                label_name=str(int(label)),
                license=DIGITS_LICENSE,
                license_url=DIGITS_LICENSE_URL,
                attribution=DIGITS_ATTRIBUTION,
            )
