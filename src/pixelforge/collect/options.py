"""The download options `collect urls` and `collect crawl` share (Typer types and defaults), declared once,
and the one function mapping them onto CollectConfig.

The defaults equal CollectConfig's (tests/test_cli.py checks it); they are written here because
importing collect.config loads numpy and Pillow, which `pixelforge --help` must not wait for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from pixelforge.configfile import merge

if TYPE_CHECKING:
    from pixelforge.collect.config import CollectConfig

IMAGE_SIZE = 256
RESIZE_MODE = "center_crop"
ENCODE = "jpg"
QUALITY = 95
MIN_SIDE = 0
TIMEOUT = 10.0
RETRIES = 2
CONCURRENCY = 64
PER_HOST = 8
PER_HOST_RPS = 0.0
FACES = "none"

ImageSize = Annotated[int, typer.Option(help="Side of the stored image in pixels.")]
ResizeMode = Annotated[str, typer.Option(help="center_crop, keep_ratio, pad or none.")]
Encode = Annotated[str, typer.Option(help="Stored encoding: jpg, png or webp.")]
Quality = Annotated[int, typer.Option(help="JPEG/WebP quality.")]
MinSide = Annotated[int, typer.Option(help="Originals with a shorter side under this fail as too_small.")]
Timeout = Annotated[float, typer.Option(help="Seconds allowed per request.")]
Retries = Annotated[
    int,
    typer.Option(
        help="Tries again after a timeout, a dropped connection, 429 or 5xx, once the host has cooled down "
        "(Retry-After honoured)."
    ),
]
Processes = Annotated[int, typer.Option(help="Worker processes for the image downloads.")]
Concurrency = Annotated[int, typer.Option(help="Image downloads in flight per process.")]
PerHost = Annotated[
    int,
    typer.Option(
        help="At most N connections in flight to one host over the run (0 = no cap); "
        "halved while the host shows overload (timeouts, 429, 503), regained slowly."
    ),
]
PerHostRps = Annotated[float, typer.Option(help="At most N requests per second to one host over the run (0 = no cap).")]
UserAgent = Annotated[str | None, typer.Option(help="User-Agent header (default names pixelforge).")]
IgnoreOptOuts = Annotated[
    bool,
    typer.Option(
        help="Do not honour robots.txt, X-Robots-Tag, TDM reservations or "
        "noai: opted-out images are downloaded too (their opt_out "
        "column says why; recorded in dataset.json)."
    ),
]
OptOutListFile = Annotated[
    str | None,
    typer.Option(
        "--opt-out-list",
        help="A file of domains, URL prefixes, image sha256 and phash values never to collect (one per line; "
        "a takedown registry, say): refused rows are failures with reason opt_out_list.",
    ),
]
AllowPrivate = Annotated[bool, typer.Option(help="Allow loopback/private addresses (local tests and the demo).")]
Faces = Annotated[
    str,
    typer.Option(
        help="none; detect: face_bboxes (x0, y0, x1, y1 as fractions) and n_faces of the stored image; "
        "blur: detect, then blur every face in the stored image (after the resize; sha256 stays the download's).",
    ),
]
Consent = Annotated[
    str | None,
    typer.Option(
        help="granted, denied or unknown: the consent column of every sample that neither the list "
        "(--consent-col) nor the image's XMP model release speaks for (source 'option'; default unknown).",
    ),
]
ConsentCol = Annotated[
    str | None,
    typer.Option(
        help="The list's column of consent (granted/denied/unknown, yes/no, true/false, 1/0): wins over the "
        "image's XMP model release and --consent; a blank cell says nothing, an unreadable one is unknown.",
    ),
]
BboxCol = Annotated[
    str | None,
    typer.Option(
        help="The list's column of face boxes: a JSON list of boxes, each x0, y0, x1, y1 as fractions of the "
        "original image (img2dataset's bbox_col); blurred in the stored image unless --faces detect. A bad cell "
        "is ignored and named in meta's bbox_error.",
    ),
]

# the flags above, and the shared ones of pixelforge.options and run.options, by CollectConfig field name
DOWNLOAD_FLAGS = (
    "image_size",
    "resize_mode",
    "encode",
    "quality",
    "min_side",
    "max_bytes",
    "max_pixels",
    "timeout",
    "retries",
    "concurrency",
    "per_host",
    "per_host_rps",
    "user_agent",
    "samples_per_shard",
    "ignore_opt_outs",
    "opt_out_list",
    "allow_private_networks",
    "license",
    "faces",
    "face_weights",
    "consent",
    "processes",
    "backend",
    "ray_address",
    "ray_task_cpus",
)


def collect_config(flags: dict[str, Any], **fields: Any) -> CollectConfig:
    """The CollectConfig of a command's download flags (``flags``: its parameters by name) and ``fields``.

    The executor flags go into the config's executor settings (configfile.merge routes them).
    """
    from pixelforge.collect.config import CollectConfig

    values = {name: flags[name] for name in DOWNLOAD_FLAGS}
    if not values["user_agent"]:
        del values["user_agent"]  # CollectConfig's default names pixelforge
    return merge(CollectConfig, CollectConfig(), {**values, **fields}, "flags")
