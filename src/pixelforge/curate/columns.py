"""The columns curate adds to every row, with their types and meanings (one place defines them)."""

from __future__ import annotations

import pyarrow as pa

from pixelforge.store.schema import FACE_BOXES_TYPE

# name -> (Arrow type, meaning). docs/curate.md repeats the meanings for users.
COLUMNS: dict[str, tuple[pa.DataType, str]] = {
    "q_min_side": (pa.int32(), "shorter side of the stored image in pixels"),
    "q_aspect": (pa.float32(), "longer side / shorter side (1 = square)"),
    "q_blur": (pa.float32(), "variance of the Laplacian of a 256x256 grey copy: LOW means blurry"),
    "q_brightness": (pa.float32(), "mean grey level in [0, 1]"),
    "q_contrast": (pa.float32(), "RMS contrast: standard deviation of grey in [0, 0.5]"),
    "q_entropy": (pa.float32(), "Shannon entropy of the grey histogram in bits (0-8); low = little information"),
    "q_grayscale": (pa.bool_(), "true when the colour channels agree (a grey image stored as RGB)"),
    "q_jpeg_quality": (pa.int32(), "estimated JPEG quality 1-100 from the quantisation tables; null if not JPEG"),
    "q_watermark": (pa.float32(), "probability of a visible watermark from the shipped CNN, in [0, 1]"),
    "dhash": (pa.uint64(), "64-bit difference hash (the second vote for near duplicates)"),
    "face_bboxes": (
        FACE_BOXES_TYPE,
        "faces found (--faces): [x0, y0, x1, y1] as fractions of the image, DataComp's convention; null when not run",
    ),
    "n_faces": (pa.int32(), "number of faces found (--faces); null when not run"),
    "c_words": (pa.int32(), "number of words in the caption (0 when none)"),
    "c_flags": (pa.list_(pa.string()), "caption problems from a closed set (see caption flags)"),
    "dup_group": (pa.string(), "duplicate group id: the key of the group's best row in the input"),
    "dup_count": (pa.int32(), "rows in the group in the input (1 = unique)"),
    "dup_keep": (pa.bool_(), "true for exactly one surviving row per group: largest original, then best quality"),
}


def field(name: str) -> pa.Field:
    """The Arrow field of curate column ``name``."""
    return pa.field(name, COLUMNS[name][0])


# found by ScoreBatch.add itself; kept from the input when this run does not look (store.schema PEOPLE_FIELDS)
FACE_COLUMNS = ("face_bboxes", "n_faces")

# Not an output column: the colour signature (quality.colour_signature) travels from the scoring
# workers to the duplicate check in the score table only.
COLOUR = "__colour_signature"  # an input may have a column "colour" (the shapes set does)
HUE_BINS = 12  # saturation mass per 30-degree hue sector
COLOUR_TYPE = pa.list_(pa.float32(), HUE_BINS)
NEAR_THUMB_SIDE = 32  # = alignment.THUMB_SIDE (columns imports no code module: only pyarrow and the store schema)
NEAR_THUMB = "__near_copy_thumbnail"  # the 32 px grey copy the near-copy pass aligns (curate.nearcopy); never written
NEAR_THUMB_TYPE = pa.list_(pa.uint8(), NEAR_THUMB_SIDE * NEAR_THUMB_SIDE)

SCORE_NAMES = (
    "q_min_side",
    "q_aspect",
    "q_blur",
    "q_brightness",
    "q_contrast",
    "q_entropy",
    "q_grayscale",
    "q_jpeg_quality",
    "q_watermark",
    "dhash",
    "face_bboxes",
    "n_faces",
)
SCORE_FIELDS: tuple[pa.Field, ...] = tuple(field(n) for n in SCORE_NAMES)  # computed per image in workers
CURATE_FIELDS: tuple[pa.Field, ...] = tuple(field(n) for n in COLUMNS)
