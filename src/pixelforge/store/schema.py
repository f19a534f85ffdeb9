"""The index schema: the one definition of a sample row and of a failure row."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import pyarrow as pa

SCHEMA_VERSION = 1

BOX_TYPE = pa.struct(
    [
        pa.field("x0", pa.float32()),
        pa.field("y0", pa.float32()),
        pa.field("x1", pa.float32()),
        pa.field("y1", pa.float32()),
        pa.field("label", pa.int32()),
    ]
)

# Core columns every dataset has, in this order. Stages may add typed columns after them
# (curate's q_* scores, an importer's attributes) but never change or drop these.
CORE_FIELDS: tuple[pa.Field, ...] = (
    pa.field("key", pa.string(), nullable=False),
    pa.field("shard", pa.string(), nullable=False),
    pa.field("member", pa.string(), nullable=False),
    pa.field("source_kind", pa.string(), nullable=False),
    pa.field("source", pa.string()),
    pa.field("page_url", pa.string()),
    pa.field("caption", pa.string()),
    pa.field("caption_source", pa.string()),
    pa.field("label", pa.int32()),
    pa.field("label_name", pa.string()),
    pa.field("boxes", pa.list_(BOX_TYPE)),
    pa.field("mask", pa.string()),
    pa.field("license", pa.string()),
    pa.field("license_url", pa.string()),
    pa.field("attribution", pa.string()),
    pa.field("opt_out", pa.string()),
    pa.field("width", pa.int32()),
    pa.field("height", pa.int32()),
    pa.field("orig_width", pa.int32()),
    pa.field("orig_height", pa.int32()),
    pa.field("format", pa.string()),
    pa.field("sha256", pa.string()),
    pa.field("phash", pa.uint64()),
    pa.field("fetched_at", pa.timestamp("us", tz="UTC")),
    pa.field("http_status", pa.int16()),
    pa.field("split", pa.string()),
    pa.field("meta", pa.string()),
)
CORE_NAMES = frozenset(f.name for f in CORE_FIELDS)

# Columns about the people in a sample, the same in every dataset that has them: collectors and
# importers write all five (consent always, faces null unless asked for), curate --faces and
# prepare --blur-faces fill the face ones; a dataset made before them reads as if they were null.
FACE_BOXES_TYPE = pa.list_(pa.list_(pa.float32(), 4))  # [x0, y0, x1, y1] fractions of the image (DataComp's)
PEOPLE_FIELDS: tuple[pa.Field, ...] = (
    pa.field("face_bboxes", FACE_BOXES_TYPE),  # null: faces not looked for
    pa.field("n_faces", pa.int32()),  # null: faces not looked for
    pa.field("faces_blurred", pa.bool_()),  # true: every face found was blurred in the stored image
    pa.field("consent", pa.string()),  # granted | denied | unknown (the people shown agreed to this use)
    pa.field(
        "consent_source", pa.string()
    ),  # where consent came from: sidecar, list:COLUMN, xmp:MR-..., option, synthetic
)
PEOPLE_NAMES = tuple(f.name for f in PEOPLE_FIELDS)
CONSENT_STATES = ("granted", "denied", "unknown")
_CONSENT_WORDS = {
    **{w: "granted" for w in ("granted", "grant", "yes", "y", "true", "1", "consented", "released")},
    **{w: "denied" for w in ("denied", "deny", "no", "n", "false", "0", "refused", "withdrawn")},
    **{w: "unknown" for w in ("unknown", "", "none", "null", "n/a", "na")},
}


def consent_value(value: Any) -> str | None:
    """``value`` (a list cell, a sidecar's "consent") as granted / denied / unknown; None when unreadable.

    Booleans and yes/no/true/false/1/0 words are read too; a missing value (None) is unknown.
    """
    if value is None:
        return "unknown"
    if isinstance(value, bool):
        return "granted" if value else "denied"
    if isinstance(value, int | float) and value in (0, 1):
        return "granted" if value else "denied"
    if isinstance(value, str):
        return _CONSENT_WORDS.get(value.strip().lower())
    return None


def people_defaults(consent: str = "unknown", consent_source: str | None = None) -> dict[str, Any]:
    """The people columns of a new sample whose faces were not looked for."""
    return {
        "face_bboxes": None,
        "n_faces": None,
        "faces_blurred": None,
        "consent": consent,
        "consent_source": consent_source,
    }


SOURCE_KINDS = (
    "url",
    "crawl",
    "imagefolder",
    "coco",
    "cifar10",
    "cifar100",
    "mnist",
    "folder",
    "digits",
    "shapes",
    "generated",
)
CAPTION_SOURCES = ("alt", "figcaption", "title", "aria-label", "context", "sidecar", "dataset", "generated")
SPLITS = ("train", "val", "test")

# Closed set of reasons a failure row may carry, with what each means (docs/get-data.md lists them).
FAILURE_REASONS: dict[str, str] = {
    # media (decoding and limits)
    "decode_error": "the bytes are an image format but could not be decoded (truncated or corrupt)",
    "not_image": "the bytes are not an image in any supported format",
    "too_large": "the file or response is over the byte-size limit",
    "too_many_pixels": "the image header declares more pixels than the pixel limit",
    "too_small": "the image's shorter side is under the minimum side",
    # importers
    "missing_file": "an annotation or list refers to a file that does not exist",
    "changed_file": "the file changed between being scored and being written (curate on a folder reads it twice)",
    "path_escape": "a file name points outside the images directory (such as ../../x.jpg)",
    "unsafe_pickle": "a pickle asks for a global outside the allowed numpy/builtin set",
    "bad_annotation": "an annotation is malformed (missing fields, wrong types, unknown category)",
    "bad_record": "a source record is malformed (wrong shape, size or type)",
    # collection
    "http_4xx": "the server answered with a 4xx status",
    "http_5xx": "the server answered with a 5xx status after retries",
    "timeout": "no complete answer within the timeout",
    "connection_error": "the connection failed or was reset",
    "dns_error": "the host name does not resolve",
    "opt_out_robots": "robots.txt disallows our user agent for this URL",
    "opt_out_header": "the response carries X-Robots-Tag noai/noimageai/none or tdm-reservation: 1",
    "opt_out_page": "the page the image was found on opts out (meta robots noai/noimageai/noindex, "
    "tdm-reservation meta or /.well-known/tdmrep.json)",
    "opt_out_image": "the <img> element opts out (data-noai, or noai/noimageai in its robots attributes)",
    "opt_out_ai_txt": "the site's /ai.txt (Spawning's site-level AI opt-out) disallows this URL",
    "opt_out_list": "the URL's domain or prefix, or the image's sha256 or perceptual hash, is on --opt-out-list",
    "private_network_blocked": "the host resolves to a loopback, private, link-local or multicast address",
    "redirect_limit": "more redirects than allowed, or a redirect loop",
    "duplicate_url": "the same URL appeared earlier in the list",
    "invalid_url": "the URL is empty, malformed or not http(s)",
}

FAILURE_FIELDS: tuple[pa.Field, ...] = (
    pa.field("row", pa.int64()),
    pa.field("source", pa.string()),
    pa.field("url", pa.string()),
    pa.field("reason", pa.string(), nullable=False),
    pa.field("detail", pa.string()),
)
FAILURE_SCHEMA = pa.schema(FAILURE_FIELDS)


def index_schema(extra_fields: Iterable[pa.Field] = ()) -> pa.Schema:
    """Return the index schema: the core fields followed by ``extra_fields``.

    Raises ValueError when an extra field reuses a core name or appears twice.
    """
    extra = list(extra_fields)
    seen: set[str] = set()
    for field in extra:
        if field.name in CORE_NAMES:
            raise ValueError(f"extra column {field.name!r} shadows a core index column")
        if field.name in seen:
            raise ValueError(f"extra column {field.name!r} declared twice")
        seen.add(field.name)
    return pa.schema(list(CORE_FIELDS) + extra)


def extra_fields_of(schema: pa.Schema) -> list[pa.Field]:
    """The fields of ``schema`` that are not core fields, in order."""
    return [f for f in schema if f.name not in CORE_NAMES]


def check_row(row: dict[str, Any], schema: pa.Schema) -> None:
    """Raise ValueError for a row with an unknown column or a value outside a closed set."""
    unknown = set(row) - set(schema.names)
    if unknown:
        raise ValueError(f"row has columns not in the index schema: {sorted(unknown)}")
    kind = row.get("source_kind")
    if kind not in SOURCE_KINDS:
        raise ValueError(f"source_kind {kind!r} is not one of {SOURCE_KINDS}")
    cs = row.get("caption_source")
    if cs is not None and cs not in CAPTION_SOURCES:
        raise ValueError(f"caption_source {cs!r} is not one of {CAPTION_SOURCES}")
    split = row.get("split")
    if split is not None and split not in SPLITS:
        raise ValueError(f"split {split!r} is not one of {SPLITS}")
    meta = row.get("meta")
    if meta is not None and not isinstance(meta, str):
        raise ValueError("meta must be a JSON string; use encode_meta()")


def check_reason(reason: str) -> None:
    if reason not in FAILURE_REASONS:
        raise ValueError(f"failure reason {reason!r} is not in FAILURE_REASONS")


def encode_meta(meta: dict[str, Any] | None) -> str | None:
    """JSON-encode a meta dict (sorted keys, so equal dicts give equal strings); None stays None."""
    if not meta:
        return None
    return json.dumps(meta, sort_keys=True, ensure_ascii=False, default=str)


def rows_to_table(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    """Build a table of ``rows`` under ``schema``; missing columns are null, wrong types raise."""
    return pa.Table.from_pylist(rows, schema=schema)
