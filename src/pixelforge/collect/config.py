"""The options of `collect urls` as one dataclass, checked before any work."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pixelforge import media
from pixelforge.collect.fetch import DEFAULT_USER_AGENT, FetchConfig
from pixelforge.collect.optout import load_opt_out_list
from pixelforge.collect.people import FACE_MODES
from pixelforge.collect.throttle import HostLimits
from pixelforge.errors import UsageError
from pixelforge.run.settings import ExecutorSettings
from pixelforge.store.schema import CONSENT_STATES


@dataclass
class CollectConfig:
    """Options of `pixelforge collect urls` (every CLI flag maps to one field)."""

    url_col: str = "url"
    caption_col: str | None = "caption"
    keep_cols: tuple[str, ...] = ()
    image_size: int = 256
    resize_mode: str = "center_crop"
    encode: str = "jpg"
    quality: int = 95
    min_side: int = 0
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 100_000_000
    timeout: float = 10.0
    retries: int = 2
    concurrency: int = 64
    per_host: int = 8  # connections in flight to one host over the run (Scrapy's per-domain default)
    per_host_rps: float = 0.0  # request starts per second to one host over the run (0: no cap)
    user_agent: str = DEFAULT_USER_AGENT
    samples_per_shard: int = 1000
    ignore_opt_outs: bool = False
    opt_out_list: str | None = None  # a file of domains, URL prefixes, sha256 and phash values never collected
    allow_private_networks: bool = False
    license: str = "unknown"
    # people (collect.people): consent from the list, else the file's XMP model release, else --consent
    consent_col: str | None = None  # the list's column of consent values (urls only)
    consent: str | None = None  # granted | denied | unknown for every sample nothing else speaks for
    faces: str = "none"  # none | detect (face_bboxes, n_faces) | blur (and blur them in the stored image)
    face_weights: str | None = None  # a YuNet ONNX file for OpenCV's FaceDetectorYN; None: the Haar cascade
    bbox_col: str | None = None  # the list's column of face boxes, blurred unless --faces detect (urls only)
    executor: ExecutorSettings = field(default_factory=ExecutorSettings)  # where the per-shard work runs

    def validate(self) -> None:
        media.check_resize_mode(self.resize_mode)
        self.encode = media.check_encoding(self.encode)
        checks = [
            ("--image-size", self.image_size, 8),
            ("--samples-per-shard", self.samples_per_shard, 1),
            ("--concurrency", self.concurrency, 1),
            ("--max-bytes", self.max_bytes, 1),
            ("--max-pixels", self.max_pixels, 1),
        ]
        for flag, value, low in checks:
            if value < low:
                raise UsageError(f"{flag} {value}: must be at least {low}")
        for flag, value in (("--min-side", self.min_side), ("--retries", self.retries), ("--per-host", self.per_host)):
            if value < 0:
                raise UsageError(f"{flag} {value}: must be 0 or more")
        if not 1 <= self.quality <= 100:
            raise UsageError(f"--quality {self.quality}: choose a value from 1 to 100")
        if self.per_host_rps < 0:
            raise UsageError(f"--per-host-rps {self.per_host_rps}: must be 0 (no cap) or more")
        if self.timeout <= 0:
            raise UsageError(f"--timeout {self.timeout}: must be more than 0 seconds")
        if self.opt_out_list:
            load_opt_out_list(self.opt_out_list)  # a missing file or a bad line: one error before any work
        self._validate_people()
        self.executor.validate()

    def _validate_people(self) -> None:
        if self.consent is not None and self.consent not in CONSENT_STATES:
            raise UsageError(f"--consent {self.consent!r}: choose one of {', '.join(CONSENT_STATES)}")
        if self.faces not in FACE_MODES:
            raise UsageError(f"--faces {self.faces!r}: choose one of {', '.join(FACE_MODES)}")
        if self.face_weights is not None:
            if self.faces == "none":
                raise UsageError(
                    "--face-weights needs --faces detect or --faces blur (--bbox-col boxes need no detector)"
                )
            if not Path(self.face_weights).is_file():
                raise UsageError(f"--face-weights {self.face_weights}: no such file (a YuNet .onnx model)")
            from pixelforge.faces import FaceDetector, FaceSettings

            FaceDetector(FaceSettings(weights=self.face_weights))  # a file OpenCV cannot load: one error now

    def fetch_config(self) -> FetchConfig:
        return FetchConfig(
            timeout=self.timeout,
            retries=self.retries,
            max_bytes=self.max_bytes,
            user_agent=self.user_agent,
            honour_opt_outs=not self.ignore_opt_outs,
            allow_private_networks=self.allow_private_networks,
            concurrency=self.concurrency,
            opt_out_list=self.opt_out_list,
            host_limits=HostLimits(self.per_host, self.per_host_rps, share=self.executor.processes),
        )
