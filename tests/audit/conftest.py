"""Tiny datasets made in code, with skews whose every audited number the tests know."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pixelforge.curate.columns import field as curate_field
from pixelforge.store import DatasetBuilder, Lineage

# one valid 1x1 PNG: the audit reads the index only, never the pixels
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de0000000c4944415478"
    "9c63f8cfc0000003010100c9fe92ef0000000049454e44ae426082"
)


def make_dataset(path, rows: list[dict], extra_fields=(), name: str = "fixture") -> str:
    """Write ``rows`` (index columns; key and source_kind default) as a dataset at ``path``."""
    b = DatasetBuilder(str(path), samples_per_shard=4, extra_fields=list(extra_fields))
    for i, row in enumerate(rows):
        full = {"key": f"s{i:03d}", "source_kind": "folder", "width": 32, "height": 32, "format": "png"}
        full.update(row)
        b.add(full, PNG, "png")
    b.finish(name=name, lineage=Lineage(command="test"))
    return str(path)


def write_predictions(path, rows: list[tuple[str, str, float, str | None]], label_column: str = "label_name") -> str:
    """A predictions parquet as `pixelforge predict` writes it: key, predicted, confidence, target."""
    keys, predicted, confidence, target = (list(c) for c in zip(*rows)) if rows else ([], [], [], [])
    table = pa.table(
        {
            "key": pa.array(keys, pa.string()),
            "predicted": pa.array(predicted, pa.string()),
            "confidence": pa.array(confidence, pa.float32()),
            "target": pa.array(target, pa.string()),
        }
    )
    table = table.replace_schema_metadata({"pixelforge.label_column": label_column})
    pq.write_table(table, str(path))
    return str(path)


# ---- the skewed fixture ------------------------------------------------------------------------
# 20 samples. Captions: 12 mention gender. "nurse" is in 5 captions: 4 with female words, 1 with male.
# "doctor" in 4: 1 female, 3 male. Labels: cat 10, dog 6, bird 3, fish 1 (unlabelled: 0).
CAPTIONS = [
    "A nurse and her patient",  # s000 female nurse
    "The nurse smiles, she is happy",  # s001 female nurse
    "a NURSE with a Woman",  # s002 female nurse
    "Nurse girl at the hospital",  # s003 female nurse
    "a nurse, he waves",  # s004 male nurse
    "The doctor and his desk",  # s005 male doctor
    "a doctor: man at work",  # s006 male doctor
    "doctor men in a hospital",  # s007 male doctor
    "a doctor; she reads",  # s008 female doctor
    "a man and a woman in the park",  # s009 female + male
    "an old man in New Zealand",  # s010 male, elderly, oceania
    "a child from Kenya",  # s011 child, africa
    "a park bench at dusk",  # s012
    "the hospital at night",  # s013
    "a cat on a mat",  # s014
    "Womanhood is not a word we match",  # s015 (no whole-word match)
    None,  # s016 no caption
    "",  # s017 empty caption
    "   ...   ",  # s018 no word
    "south-african wildlife",  # s019 africa (multi-word through a hyphen)
]
LABELS = ["cat"] * 10 + ["dog"] * 6 + ["bird"] * 3 + ["fish"]
LICENSES = (
    ["cc-by-4.0"] * 6
    + ["cc0-1.0"] * 4
    + ["cc-by-sa-2.0-de"] * 2
    + ["cc-by-nc-4.0"] * 3
    + ["unknown"] * 2
    + [None, "CC-BY-2.0", "mit"]
)
SOURCES = (
    [f"https://www.example.com/img/{i}.jpg" for i in range(8)]
    + [f"http://cdn.pics.org/{i}.png" for i in range(4)]
    + ["https://user@photos.net:8080/a.jpg", "https://other.io/b.jpg"]
    + ["/data/local/x.png"] * 6
)
OPT_OUTS = {3: "robots.txt", 7: "robots.txt", 12: "x-robots-tag: noai"}
SIZES = [(64, 32)] * 5 + [(32, 64)] * 3 + [(48, 48)] * 12


def skewed_rows() -> list[dict]:
    rows = []
    for i in range(20):
        w, h = SIZES[i]
        rows.append(
            {
                "caption": CAPTIONS[i],
                "label": ["cat", "dog", "bird", "fish"].index(LABELS[i]),
                "label_name": LABELS[i],
                "license": LICENSES[i],
                "source": SOURCES[i],
                "source_kind": "url" if i < 14 else "folder",
                "opt_out": OPT_OUTS.get(i),
                "width": w,
                "height": h,
                "attribution": f"Author {i}" if i % 5 else None,
                "license_url": "https://example.com/licence" if i == 1 else None,
                "page_url": "https://www.example.com/page" if i == 2 else None,
                "q_brightness": i / 20,
            }
        )
    return rows


@pytest.fixture(scope="session")
def skewed(tmp_path_factory) -> str:
    return make_dataset(
        tmp_path_factory.mktemp("audit") / "skewed",
        skewed_rows(),
        extra_fields=[curate_field("q_brightness")],
        name="skewed",
    )


@pytest.fixture(scope="session")
def empty(tmp_path_factory) -> str:
    return make_dataset(tmp_path_factory.mktemp("audit") / "empty", [], name="empty")
