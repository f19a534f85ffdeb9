"""`pixelforge prepare`: uniform size, optional denoising and offline augmentation, into a new dataset."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from pixelforge import media
from pixelforge.errors import UsageError
from pixelforge.prepare.augment import parse_spec
from pixelforge.prepare.denoise import get_denoiser
from pixelforge.progress import track
from pixelforge.run import ExecutorSettings
from pixelforge.store import (
    Lineage,
    begin_run,
    config_to_dict,
    default_name,
    finalize,
    open_input,
    output_schema,
    shard_id_of,
    shard_name,
)
from pixelforge.store.schema import PEOPLE_FIELDS

# Columns prepare adds: which sample an augmented copy was made from, and which copy it is.
PREPARE_FIELDS: tuple[pa.Field, ...] = (
    pa.field("aug_of", pa.string()),
    pa.field("aug_index", pa.int32()),
)
MAX_COPIES = 100
FACE_FIELDS = ("face_bboxes", "n_faces", "faces_blurred")


@dataclass
class PrepareConfig:
    """Target size and mode, denoiser, augmentation SPEC and copies per training sample."""

    size: int = 64
    resize_mode: str = "center_crop"
    denoise: str = "none"
    augment: str | None = None  # SPEC (pixelforge.prepare.augment.parse_spec)
    copies: int = 0  # augmented copies per train (or unsplit) sample, besides the sample itself
    encoding: str = "png"
    quality: int = 95
    seed: int = 0
    blur_faces: bool = False  # blur every face (the face_bboxes column, else found here) after resizing
    face_weights: str | None = None  # a YuNet ONNX file for OpenCV's FaceDetectorYN; None: the Haar cascade
    executor: ExecutorSettings = field(default_factory=ExecutorSettings)  # where the per-shard work runs

    def validate(self) -> None:
        """Raise UsageError naming the bad flag and its allowed values, before any work."""
        if not 1 <= self.size <= 8192:
            raise UsageError(f"--size {self.size}: choose a side from 1 to 8192 pixels")
        media.check_resize_mode(self.resize_mode)
        self.encoding = media.check_encoding(self.encoding)
        if not 1 <= self.quality <= 100:
            raise UsageError(f"--quality {self.quality}: choose an integer from 1 to 100")
        get_denoiser(self.denoise)
        if not 0 <= self.copies <= MAX_COPIES:
            raise UsageError(f"--copies {self.copies}: choose 0..{MAX_COPIES}")
        if self.copies and not self.augment:
            raise UsageError(f"--copies {self.copies} needs --augment SPEC, such as --augment hflip,rotate=10")
        if self.augment:
            parse_spec(self.augment)
            if not self.copies:
                raise UsageError(
                    "--augment needs --copies K (augmented copies per training sample), such as --copies 2"
                )
        if self.face_weights is not None:
            if not self.blur_faces:
                raise UsageError("--face-weights needs --blur-faces")
            if not Path(self.face_weights).is_file():
                raise UsageError(f"--face-weights {self.face_weights}: no such file (a YuNet .onnx model)")
        self.executor.validate()


@dataclass
class PrepareResult:
    out: str
    input_samples: int
    samples: int
    augmented: int
    failures: int
    seconds: float


def prepare(
    inp: str, out: str, config: PrepareConfig, *, overwrite: bool = False, resume: bool = False
) -> PrepareResult:
    """Resize (media.resize) every sample of ``inp`` to ``config.size``, denoise, add augmented copies.

    Copies are made for rows whose split is train or null only (validation and test data are
    never augmented), keyed ``KEY_augK`` with ``aug_of`` = KEY; their boxes and masks are
    dropped because geometric ops move the content. Boxes and masks of the resized samples
    follow the resize exactly. Undecodable samples become failure rows. With ``resume``, a
    stopped run into ``out`` continues: its finished shards are kept, the others are made.
    """
    config.validate()
    config.executor.check_output(out)  # memory:// is private to one process
    ds, _, _ = open_input(inp, out, overwrite, resume)
    done = begin_run(out, "prepare", inp, config, resume)
    # blurring states its faces: the people columns (of store.schema) are written even if the input lacks them
    faces = tuple(f for f in PEOPLE_FIELDS if f.name in FACE_FIELDS) if config.blur_faces else ()
    schema = output_schema(ds, faces + PREPARE_FIELDS)
    from pixelforge.prepare.worker import PrepareTask, prepare_shard

    start = time.monotonic()
    tasks = (
        PrepareTask(ds.path, shard, out, shard_id_of(shard), config, schema)
        for shard in ds.shards()
        if shard_name(shard_id_of(shard)) not in done
    )
    written = fails = 0
    image_warnings: dict[str, int] = {}
    with track("prepare", total=ds.num_samples) as bar:
        for n, f, warned in config.executor.run(prepare_shard, tasks):
            written, fails = written + n, fails + f
            media.add_warnings(image_warnings, warned)
            bar.advance(n + f)
    seconds = time.monotonic() - start
    result = finalize(
        out,
        name=default_name(out),
        schema=schema,
        lineage=Lineage("prepare", config_to_dict(config), [inp]),
        stats={"seconds": round(seconds, 3), "image_warnings": image_warnings},
    )
    fails = result.info["num_failures"]  # this run's and, when resumed, the stopped run's shards
    originals = ds.num_samples - fails
    return PrepareResult(
        out=out,
        input_samples=ds.num_samples,
        samples=result.num_samples,
        augmented=result.num_samples - originals,
        failures=fails,
        seconds=round(seconds, 3),
    )
