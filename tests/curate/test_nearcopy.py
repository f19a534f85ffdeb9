"""The near-copy pass: crops and small rotations the hashes miss, found by alignment, grouped by curate
(--dedup full) and kept together by split."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pixelforge import alignment
from pixelforge.cli import main
from pixelforge.curate import nearcopy
from pixelforge.curate.dedup import hamming

from .conftest import photo

SIDE = 160


def crop(img: Image.Image, frac: float, dx: float, dy: float) -> Image.Image:
    w, h = img.size
    x, y = int(w * frac * dx), int(h * frac * dy)
    return img.crop((x, y, x + int(w * (1 - frac)), y + int(h * (1 - frac))))


def rotate(img: Image.Image, degrees: float) -> Image.Image:
    return img.rotate(degrees, resample=Image.Resampling.BICUBIC, expand=False)


COPIES = {  # base seed -> its copy: the kinds the hashes miss (tests below check they do)
    11: lambda im: crop(im, 0.08, 1.0, 0.2),
    12: lambda im: crop(im, 0.08, 0.0, 1.0),
    13: lambda im: rotate(im, 4.5),
    14: lambda im: rotate(im, -3.5),
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """16 distinct photos and a crop or rotation of four of them, as JPEG files."""
    root = tmp_path_factory.mktemp("nearcopy") / "images"
    root.mkdir()
    for seed in range(10, 26):
        base = photo(seed, SIDE)
        base.save(root / f"b{seed}.jpg", quality=92)
        if seed in COPIES:
            COPIES[seed](base).save(root / f"c{seed}.jpg", quality=92)
    return root


def thumbs_of(*images: Image.Image) -> np.ndarray:
    return np.stack([alignment.thumbnail(im) for im in images])


def test_alignment_finds_crops_and_rotations_and_not_other_images():
    for seed, make in COPIES.items():
        base = photo(seed, SIDE)
        a, b = thumbs_of(base, make(base))
        assert alignment.alignment_score(a, b) >= 0.95, seed
        assert alignment.alignment_score(b, a) >= 0.95, seed  # either side may be the copy
    others = thumbs_of(*(photo(s, SIDE) for s in range(30, 36)))
    scores = [alignment.alignment_score(others[i], others[j]) for i in range(6) for j in range(6) if i != j]
    assert max(scores) < 0.95


def test_candidates_hold_every_copy_and_skip_what_the_hashes_grouped():
    bases = [photo(s, SIDE) for s in COPIES]
    images = bases + [make(b) for make, b in zip(COPIES.values(), bases, strict=True)]
    images += [photo(s, SIDE) for s in range(40, 48)]
    thumbs = thumbs_of(*images)
    pairs = {tuple(p) for p in alignment.candidate_pairs(thumbs, 3, 0.5).tolist()}
    assert {(i, i + 4) for i in range(4)} <= pairs
    phash = np.zeros(len(images), np.uint64)  # equal hashes: every candidate passes the bit filter
    colour = np.zeros((len(images), 12), np.float32)
    found = nearcopy.find_near_copies(thumbs, phash, phash, colour, np.arange(len(images)), nearcopy.NearCopyParams())
    assert found.pairs.tolist() == [[0, 4], [1, 5], [2, 6], [3, 7]]
    assert found.candidates == len(pairs) and found.verified == len(pairs)
    grouped = np.arange(len(images))
    grouped[4:8] = [0, 1, 2, 3]  # the hash pass already joined each copy to its base
    again = nearcopy.find_near_copies(thumbs, phash, phash, colour, grouped, nearcopy.NearCopyParams())
    assert again.pairs.tolist() == [] and again.candidates == len(pairs) - 4


def test_curate_full_groups_the_crops_and_rotations_hash_misses(folder, tmp_path):
    groups = {}
    for mode in ("hash", "full"):
        out = tmp_path / mode
        assert main(["curate", str(folder), "--out", str(out), "--only", "duplicates", "--dedup", mode]) == 0
        rows = pq.read_table(out / "index.parquet", columns=["source", "dup_group"]).to_pylist()
        by: dict[str, set] = {}
        for r in rows:
            by.setdefault(r["dup_group"], set()).add(r["source"].rsplit("/", 1)[-1].split(".")[0])
        groups[mode] = sorted(sorted(g) for g in by.values() if len(g) > 1)
        report = json.loads((out / "curation.json").read_text())["duplicates"]
        assert report["dedup"] == mode
    assert groups["hash"] == []  # the hashes miss all four copies
    assert groups["full"] == [[f"b{s}", f"c{s}"] for s in sorted(COPIES)]
    assert report["aligned_pairs"] == 4 and report["near_pairs"] == 0


def test_the_copies_differ_too_much_for_the_hashes(folder):
    """What makes the curate test meaningful: each copy is beyond the hash pass's thresholds."""
    from pixelforge import media
    from pixelforge.curate.quality import dhash_input, dhashes, phash_input, phashes

    def hashes(name):
        img = media.decode((folder / name).read_bytes(), draft_size=media.PHASH_DRAFT)
        return phashes(phash_input(img)[None])[0], dhashes(dhash_input(img)[None])[0]

    for seed in COPIES:
        (pa, da), (pb, db) = hashes(f"b{seed}.jpg"), hashes(f"c{seed}.jpg")
        p, d = (int(hamming(np.array([x]), np.array([y]))[0]) for x, y in ((pa, pb), (da, db)))
        assert min(p, d) > 8 or p + d > 24, seed


def test_split_keeps_a_crop_with_its_original(folder, tmp_path):
    curated, split = tmp_path / "cur", tmp_path / "split"
    assert main(["curate", str(folder), "--out", str(curated), "--only", "duplicates"]) == 0
    args = ["split", str(curated), "--out", str(split), "--val", "0.3", "--test", "0.3", "--seed", "3"]
    assert main(args) == 0
    rows = pq.read_table(split / "index.parquet", columns=["source", "split"]).to_pylist()
    where = {r["source"].rsplit("/", 1)[-1].split(".")[0]: r["split"] for r in rows}
    assert all(where[f"b{s}"] == where[f"c{s}"] for s in COPIES)
    assert len(set(where.values())) == 3


def test_bad_dedup_is_a_usage_error(folder, tmp_path, capsys):
    assert main(["curate", str(folder), "--out", str(tmp_path / "x"), "--dedup", "orb"]) == 2
    assert "--dedup 'orb': choose full (also crops and rotations) or hash (phash, dhash)" in capsys.readouterr().err
