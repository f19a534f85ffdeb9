"""Consent on every importer: the item's record (a sidecar) > its image's XMP model release > --consent > unknown."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from pixelforge.cli import main
from pixelforge.store import Dataset
from pixelforge.store.schema import PEOPLE_NAMES
from tests.sources.test_coco import make_coco
from tests.sources.test_mnist import make_mnist


def xmp(code: str) -> bytes:
    """An XMP packet with PLUS's model release status, as photo tools write it."""
    return (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:plus="http://ns.useplus.org/ldf/xmp/1.0/" '
        f'plus:ModelReleaseStatus="http://ns.useplus.org/ldf/vocab/MR-{code}"/></rdf:RDF></x:xmpmeta>'
    ).encode()


def jpeg(colour: str, code: str | None = None) -> bytes:
    buf = io.BytesIO()
    img = Image.new("RGB", (16, 12), colour)
    if code is None:
        img.save(buf, "JPEG", quality=90)
    else:
        img.save(buf, "JPEG", quality=90, xmp=xmp(code))
    return buf.getvalue()


def consent_by_file(out) -> dict[str, tuple[str, str | None]]:
    rows = Dataset.open(str(out)).index().to_pylist()
    return {r["source"].rsplit("/", 1)[-1]: (r["consent"], r["consent_source"]) for r in rows}


def test_folder_sidecar_then_xmp_then_flag_then_unknown(tmp_path):
    root = tmp_path / "ft"
    root.mkdir()
    sidecars = {
        "yes.jpg": {"consent": "granted"},
        "no.jpg": {"consent": False, "license": "cc-by-4.0"},
        "maybe.jpg": {"consent": "maybe", "consent_source": "form 12"},  # kept in meta, not the column
        "null.jpg": {"consent": None},  # no statement: the flag decides
        "record_wins.jpg": {"consent": "yes"},  # over its image's MR-NON
    }
    for name in (*sidecars, "plain.jpg"):
        (root / name).write_bytes(jpeg("red", "NON" if name == "record_wins.jpg" else None))
    for name, doc in sidecars.items():
        (root / name).with_suffix(".json").write_text(json.dumps(doc))
    (root / "released.jpg").write_bytes(jpeg("blue", "NON"))  # XMP beats --consent

    assert main(["import", "folder", str(root), "--out", str(tmp_path / "a"), "--consent", "granted"]) == 0
    assert consent_by_file(tmp_path / "a") == {
        "yes.jpg": ("granted", "sidecar"),
        "no.jpg": ("denied", "sidecar"),
        "maybe.jpg": ("unknown", "sidecar (unreadable 'maybe')"),
        "null.jpg": ("granted", "option"),
        "record_wins.jpg": ("granted", "sidecar"),
        "plain.jpg": ("granted", "option"),
        "released.jpg": ("denied", "xmp:MR-NON"),
    }
    ds = Dataset.open(str(tmp_path / "a"))
    rows = {r["source"].rsplit("/", 1)[-1]: r for r in ds.index().to_pylist()}
    assert set(PEOPLE_NAMES) <= set(ds.schema.names)
    assert {(r["face_bboxes"], r["n_faces"], r["faces_blurred"]) for r in rows.values()} == {(None, None, None)}
    assert json.loads(rows["maybe.jpg"]["meta"]) == {"consent_source": "form 12"}
    assert rows["no.jpg"]["meta"] is None and rows["no.jpg"]["license"] == "cc-by-4.0"
    assert ds.info["lineage"]["config"]["options"]["consent"] == "granted"

    # without the flag: what no record or image states is unknown, from no source
    assert main(["import", "folder", str(root), "--out", str(tmp_path / "b")]) == 0
    got = consent_by_file(tmp_path / "b")
    assert got["plain.jpg"] == got["null.jpg"] == ("unknown", None)
    assert got["released.jpg"] == ("denied", "xmp:MR-NON")


def test_xmp_model_release_codes_on_an_image_folder(tmp_path):
    root = tmp_path / "train"
    for code in ("UMR", "NAP", "LMR", "NON"):
        (root / "people").mkdir(parents=True, exist_ok=True)
        (root / "people" / f"{code}.jpg").write_bytes(jpeg("green", code))
    assert main(["import", "imagefolder", str(root), "--out", str(tmp_path / "out"), "--consent", "denied"]) == 0
    assert consent_by_file(tmp_path / "out") == {
        "UMR.jpg": ("granted", "xmp:MR-UMR"),
        "NAP.jpg": ("granted", "xmp:MR-NAP"),  # no person shown
        "LMR.jpg": ("unknown", "xmp:MR-LMR"),  # limited releases: the terms decide, not a flag
        "NON.jpg": ("denied", "xmp:MR-NON"),
    }


def test_coco_reads_its_images_xmp_or_the_flag(tmp_path):
    imgs, inst, _ = make_coco(tmp_path)
    (imgs / "a.jpg").write_bytes(_with_xmp(imgs / "a.jpg", "UMR"))  # the same picture, now with a release
    out = tmp_path / "out"
    args = ["import", "coco", "--images", str(imgs), "--annotations", str(inst), "--out", str(out)]
    assert main([*args, "--consent", "unknown"]) == 0
    assert consent_by_file(out) == {
        "a.jpg": ("granted", "xmp:MR-UMR"),
        "b.png": ("unknown", "option"),  # the flag said unknown: recorded as said
        "c.jpg": ("unknown", "option"),
        "f.jpg": ("unknown", "option"),
    }


def _with_xmp(path, code: str) -> bytes:
    buf = io.BytesIO()
    Image.open(path).save(buf, "JPEG", quality=95, xmp=xmp(code))
    return buf.getvalue()


@pytest.mark.parametrize("flag", [[], ["--consent", "granted"]])
def test_sets_without_a_record_per_item_take_the_flag(tmp_path, flag):
    make_mnist(tmp_path / "mnist")
    assert main(["import", "mnist", str(tmp_path / "mnist"), "--out", str(tmp_path / "m"), *flag]) == 0
    want = ("granted", "option") if flag else ("unknown", None)
    assert set(consent_by_file(tmp_path / "m").values()) == {want}


def test_digits_with_consent_granted(tmp_path):
    out = tmp_path / "digits"
    assert main(["import", "digits", "--out", str(out), "--consent", "granted", "--processes", "1"]) == 0
    rows = Dataset.open(str(out)).index(columns=["consent", "consent_source", "n_faces"]).to_pylist()
    assert len(rows) == 1797
    assert {(r["consent"], r["consent_source"], r["n_faces"]) for r in rows} == {("granted", "option", None)}


def test_shapes_are_synthetic_whatever_the_flag(tmp_path):
    out = tmp_path / "shapes"
    assert main(["import", "shapes", "--n", "6", "--size", "16", "--out", str(out), "--consent", "denied"]) == 0
    assert set(consent_by_file(out).values()) == {("granted", "synthetic")}


def test_a_bad_consent_is_one_line_exit_2_before_any_work(tmp_path, capsys):
    root = tmp_path / "ft"
    root.mkdir()
    (root / "a.jpg").write_bytes(jpeg("red"))
    out = tmp_path / "out"
    assert main(["import", "folder", str(root), "--out", str(out), "--consent", "yes"]) == 2
    err = capsys.readouterr().err
    assert err == "Error: --consent 'yes': choose one of granted, denied, unknown\n"
    assert not out.exists()
