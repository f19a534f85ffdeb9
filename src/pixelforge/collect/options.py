"""The image options `collect urls` and `collect crawl` share (Typer types), declared once."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

ImageSize = Annotated[int, typer.Option(help="Side of the stored image in pixels.")]
ResizeMode = Annotated[str, typer.Option(help="center_crop, keep_ratio, pad or none.")]
Encode = Annotated[str, typer.Option(help="Stored encoding: jpg, png or webp.")]
Quality = Annotated[int, typer.Option(help="JPEG/WebP quality.")]
MinSide = Annotated[int, typer.Option(help="Originals with a shorter side under this fail as too_small.")]
UserAgent = Annotated[Optional[str], typer.Option(help="User-Agent header (default names pixelforge).")]
AllowPrivate = Annotated[bool, typer.Option(help="Allow loopback/private addresses (local tests and the demo).")]
