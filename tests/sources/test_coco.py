"""Tests of the COCO importer on a small COCO set built in tmp_path."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as cocomask

from pixelforge.errors import UsageError
from pixelforge.sources.base import Failure, ImportOptions, Record, run_import
from pixelforge.sources.coco import CocoSource, license_to_spdx, rle_string_to_counts
from pixelforge.store import Dataset

CATEGORIES = [
    {"id": 1, "name": "person", "supercategory": "person"},
    {"id": 2, "name": "bicycle", "supercategory": "vehicle"},
    {"id": 3, "name": "car", "supercategory": "vehicle"},
]
LICENSES = [
    {"id": 4, "name": "Attribution License", "url": "http://creativecommons.org/licenses/by/2.0/"},
    {
        "id": 1,
        "name": "Attribution-NonCommercial-ShareAlike License",
        "url": "http://creativecommons.org/licenses/by-nc-sa/2.0/",
    },
    {"id": 7, "name": "No known copyright restrictions", "url": "http://flickr.com/commons/usage/"},
]


def _image_bytes(w: int, h: int, fmt: str) -> bytes:
    rng = np.random.default_rng(w * h)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


def _rle_region(h: int, w: int, rows: slice, cols: slice) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[rows, cols] = 1
    return m


def _uncompressed_counts(m: np.ndarray) -> list[int]:
    """COCO's uncompressed RLE: run lengths over the column-major pixels, starting with zeros."""
    flat = m.flatten(order="F")
    counts, value, run = [], 0, 0
    for px in flat:
        if px != value:
            counts.append(run)
            value, run = px, 0
        run += 1
    counts.append(run)
    return counts


def make_coco(tmp_path, *, bad_segmentation: bool = True):
    """A COCO folder with 3 good images and one image for each failure reason."""
    imgs = tmp_path / "imgs"
    (imgs / "sub").mkdir(parents=True)
    (imgs / "a.jpg").write_bytes(_image_bytes(40, 30, "JPEG"))
    (imgs / "b.png").write_bytes(_image_bytes(20, 20, "PNG"))
    (imgs / "sub" / "c.jpg").write_bytes(_image_bytes(16, 12, "JPEG"))
    (imgs / "corrupt.jpg").write_bytes(_image_bytes(40, 30, "JPEG")[:200])
    (imgs / "d.jpg").write_bytes(_image_bytes(10, 10, "JPEG"))
    (imgs / "e.jpg").write_bytes(_image_bytes(10, 10, "JPEG"))
    (imgs / "f.jpg").write_bytes(_image_bytes(10, 10, "JPEG"))
    (tmp_path / "outside.jpg").write_bytes(_image_bytes(10, 10, "JPEG"))
    os.symlink(tmp_path / "outside.jpg", imgs / "link.jpg")

    crowd = cocomask.encode(np.asfortranarray(_rle_region(30, 40, slice(5, 15), slice(8, 20))))
    images = [
        {
            "id": 11,
            "file_name": "a.jpg",
            "width": 40,
            "height": 30,
            "license": 4,
            "coco_url": "http://images.cocodataset.org/val2017/a.jpg",
            "date_captured": "2013-11-14 17:02:52",
        },
        {"id": 12, "file_name": "b.png", "width": 20, "height": 20, "license": 7},
        {"id": 13, "file_name": "sub/c.jpg", "width": 16, "height": 12, "license": 1},
        {"id": 14, "file_name": "../../x.jpg", "width": 10, "height": 10},
        {"id": 15, "file_name": "nope.jpg", "width": 10, "height": 10},
        {"id": 16, "file_name": "corrupt.jpg", "width": 40, "height": 30},
        {"id": 17, "file_name": "d.jpg", "width": 10, "height": 10},
        {"id": 18, "file_name": "link.jpg", "width": 10, "height": 10},
        {"id": 19, "file_name": "e.jpg", "width": 10, "height": 10},
        {"id": 20, "file_name": "f.jpg", "width": 10, "height": 10},
    ]
    annotations = [
        {
            "id": 1,
            "image_id": 11,
            "category_id": 1,
            "bbox": [2, 3, 10, 5],
            "iscrowd": 0,
            "area": 50.0,
            "segmentation": [[2, 3, 12, 3, 12, 8, 2, 8]],
        },
        {
            "id": 2,
            "image_id": 11,
            "category_id": 2,
            "bbox": [8.5, 5, 12, 10],
            "iscrowd": 1,
            "area": 120.0,
            "segmentation": {"size": [30, 40], "counts": crowd["counts"].decode("ascii")},
        },
        {
            "id": 3,
            "image_id": 12,
            "category_id": 3,
            "bbox": [0, 0, 5, 5],
            "iscrowd": 1,
            "area": 25.0,
            "segmentation": {
                "size": [20, 20],
                "counts": _uncompressed_counts(_rle_region(20, 20, slice(0, 5), slice(0, 5))),
            },
        },
        {"id": 4, "image_id": 17, "category_id": 1, "bbox": [1, 2, -3, 4], "segmentation": []},
        {"id": 5, "image_id": 19, "category_id": 99, "bbox": [1, 2, 3, 4], "segmentation": []},
        {
            "id": 6,
            "image_id": 20,
            "category_id": 1,
            "bbox": [1, 1, 2, 2],
            "segmentation": [[1, 1, 3, 3]] if bad_segmentation else [],
        },
        {"id": 7, "image_id": 999, "category_id": 1, "bbox": [1, 1, 2, 2], "segmentation": []},
    ]
    inst = tmp_path / "instances.json"
    inst.write_text(
        json.dumps(
            {"info": {}, "licenses": LICENSES, "images": images, "annotations": annotations, "categories": CATEGORIES}
        )
    )
    caps = tmp_path / "captions.json"
    caps.write_text(
        json.dumps(
            {
                "images": images,
                "annotations": [
                    {"id": 101, "image_id": 11, "caption": "A person next to a bicycle."},
                    {"id": 102, "image_id": 13, "caption": "A small car."},
                    {"id": 103, "image_id": 11, "caption": "Someone rides by."},
                ],
            }
        )
    )
    return imgs, inst, caps


def _import(tmp_path, source: CocoSource) -> Dataset:
    result = run_import(source, ImportOptions(out=str(tmp_path / "out")))
    return Dataset.open(result.out)


def _rows_by_file(ds: Dataset) -> dict[str, dict]:
    return {os.path.basename(r["source"]): r for r in ds.index().to_pylist()}


def test_samples_boxes_licences_and_captions(tmp_path):
    imgs, inst, caps = make_coco(tmp_path)
    ds = _import(tmp_path, CocoSource(images=str(imgs), annotations=str(inst), captions=str(caps)))
    rows = _rows_by_file(ds)
    assert ds.num_samples == 4 and set(rows) == {"a.jpg", "b.png", "c.jpg", "f.jpg"}

    a = rows["a.jpg"]
    assert a["source"] == os.path.join(str(imgs), "a.jpg")
    assert a["source_kind"] == "coco" and a["coco_id"] == 11
    assert a["boxes"] == [
        {"x0": 2.0, "y0": 3.0, "x1": 12.0, "y1": 8.0, "label": 1},
        {"x0": 8.5, "y0": 5.0, "x1": 20.5, "y1": 15.0, "label": 2},
    ]
    assert a["label"] is None and a["label_name"] is None and a["mask"] is None
    assert (a["license"], a["license_url"]) == ("cc-by-2.0", "http://creativecommons.org/licenses/by/2.0/")
    assert a["attribution"] is None
    assert (a["caption"], a["caption_source"]) == ("A person next to a bicycle.", "dataset")
    assert (a["width"], a["height"]) == (40, 30)
    meta = json.loads(a["meta"])
    assert meta == {
        "coco_id": 11,
        "categories": ["bicycle", "person"],
        "license": 4,
        "coco_url": "http://images.cocodataset.org/val2017/a.jpg",
        "date_captured": "2013-11-14 17:02:52",
        "captions": ["A person next to a bicycle.", "Someone rides by."],
    }

    # a licence the file names but that is not Creative Commons stays unknown (never guessed)
    b = rows["b.png"]
    assert (b["license"], b["license_url"]) == ("unknown", None)
    assert json.loads(b["meta"])["license_name"] == "No known copyright restrictions"
    assert b["caption"] is None and b["caption_source"] is None
    assert b["boxes"] == [{"x0": 0.0, "y0": 0.0, "x1": 5.0, "y1": 5.0, "label": 3}]

    c = rows["c.jpg"]
    assert c["license"] == "cc-by-nc-sa-2.0" and c["boxes"] == [] and c["coco_id"] == 13
    assert c["caption"] == "A small car." and json.loads(c["meta"])["categories"] == []


def test_failures_have_reasons_and_account_for_every_image(tmp_path):
    imgs, inst, caps = make_coco(tmp_path)
    ds = _import(tmp_path, CocoSource(images=str(imgs), annotations=str(inst)))
    fails = ds.failures().to_pylist()
    by_file = {os.path.basename(f["source"]): f for f in fails if f["source"] != str(inst)}
    assert {k: f["reason"] for k, f in by_file.items()} == {
        "x.jpg": "path_escape",
        "nope.jpg": "missing_file",
        "corrupt.jpg": "decode_error",
        "d.jpg": "bad_annotation",
        "link.jpg": "path_escape",
        "e.jpg": "bad_annotation",
    }
    assert "bbox" in by_file["d.jpg"]["detail"] and "99" in by_file["e.jpg"]["detail"]
    # the orphan annotation (image_id 999) is reported once, against the annotation file
    orphans = [f for f in fails if f["source"] == str(inst)]
    assert [(f["reason"], f["detail"].split()[0]) for f in orphans] == [("bad_annotation", "1")]
    images = json.loads(inst.read_text())["images"]
    assert ds.num_samples + len(by_file) == len(images)
    assert ds.stats()["failure_reasons"] == {
        "bad_annotation": 3,
        "decode_error": 1,
        "missing_file": 1,
        "path_escape": 2,
    }


def test_masks_paint_polygons_and_both_rle_forms(tmp_path):
    imgs, inst, _ = make_coco(tmp_path)
    ds = _import(tmp_path, CocoSource(images=str(imgs), annotations=str(inst), masks=True))
    masks = {os.path.basename(s.row["source"]): s.mask for s in ds.iter_samples()}
    assert set(masks) == {"a.jpg", "b.png", "c.jpg"}  # f.jpg's 2-point polygon is now a bad annotation

    a = np.array(Image.open(io.BytesIO(masks["a.jpg"])))
    assert a.shape == (30, 40) and a.dtype == np.uint8
    assert a[4, 4] == 1  # polygon only (row 4, column 4)
    assert a[6, 10] == 2  # polygon and crowd RLE overlap: the later annotation wins
    assert a[12, 15] == 2  # crowd RLE only
    assert a[0, 0] == 0 and a[20, 30] == 0
    assert set(np.unique(a)) == {0, 1, 2}

    b = np.array(Image.open(io.BytesIO(masks["b.png"])))
    assert b.shape == (20, 20) and (b[:5, :5] == 3).all() and b.sum() == 3 * 25
    assert not np.array(Image.open(io.BytesIO(masks["c.jpg"]))).any()  # no instances: all background

    fails = {os.path.basename(f["source"]): f for f in ds.failures().to_pylist()}
    assert fails["f.jpg"]["reason"] == "bad_annotation" and "segmentation" in fails["f.jpg"]["detail"]


@pytest.mark.parametrize(
    "segmentation, needle",
    [
        ({"size": [10, 10], "counts": ""}, "cover 0 pixels"),
        ({"size": [10, 10], "counts": [5, 10]}, "cover 15 pixels"),
        ({"size": [9, 10], "counts": [90]}, "RLE size"),
        ({"size": [10, 10], "counts": "\x7f\x7f"}, "truncated"),
        ([[1, 1, 5, 1, float("nan"), 5]], "polygons"),
        ("not a mask", "neither"),
    ],
)
def test_malformed_segmentations_fail_the_image(tmp_path, segmentation, needle):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    (imgs / "a.jpg").write_bytes(_image_bytes(10, 10, "JPEG"))
    inst = tmp_path / "instances.json"
    inst.write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10}],
                "categories": CATEGORIES,
                "annotations": [
                    {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "segmentation": segmentation}
                ],
            }
        )
    )
    items = list(CocoSource(images=str(imgs), annotations=str(inst), masks=True).records())
    assert len(items) == 1 and isinstance(items[0], Failure)
    assert items[0].reason == "bad_annotation" and needle in items[0].detail


def test_records_are_lazy_and_count_matches(tmp_path):
    imgs, inst, caps = make_coco(tmp_path)
    source = CocoSource(images=str(imgs), annotations=str(inst), captions=str(caps))
    source.validate()
    items = list(source.records())
    assert source.count() == len(items) == 10 + 1
    assert [type(i) for i in items[:3]] == [Record, Record, Record]
    # bytes are read when an image's turn comes, not up front: a file changed mid-stream is seen
    stream = source.records()
    first = next(stream)
    assert first.image == (imgs / "a.jpg").read_bytes() and first.extra == {"coco_id": 11}
    (imgs / "b.png").write_bytes(b"changed")
    assert next(stream).image == b"changed"


def test_lineage_records_the_flags_not_the_parsed_json(tmp_path):
    imgs, inst, caps = make_coco(tmp_path)
    ds = _import(tmp_path, CocoSource(images=str(imgs), annotations=str(inst), captions=str(caps)))
    assert ds.info["lineage"]["config"]["source"] == {
        "images": str(imgs),
        "annotations": str(inst),
        "captions": str(caps),
        "masks": False,
    }
    assert ds.info["extra_columns"] == [
        "face_bboxes:list<item: fixed_size_list<item: float>[4]>",
        "n_faces:int32",
        "faces_blurred:bool",
        "consent:string",
        "consent_source:string",
        "coco_id:int64",
    ]


def test_validate_names_the_bad_path_and_flag(tmp_path):
    imgs, inst, _ = make_coco(tmp_path)
    missing = tmp_path / "nope" / "instances.json"
    with pytest.raises(UsageError, match=r"--annotations .*nope/instances\.json: no such file"):
        CocoSource(images=str(imgs), annotations=str(missing)).validate()
    with pytest.raises(UsageError, match=r"--images .*missing_dir: not a directory"):
        CocoSource(images=str(tmp_path / "missing_dir"), annotations=str(inst)).validate()
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(UsageError, match=r"--annotations .*broken\.json: is not valid JSON"):
        CocoSource(images=str(imgs), annotations=str(tmp_path / "broken.json")).validate()
    (tmp_path / "noimages.json").write_text('{"annotations": []}')
    with pytest.raises(UsageError, match=r'noimages\.json: has no "images" list'):
        CocoSource(images=str(imgs), annotations=str(tmp_path / "noimages.json")).validate()
    with pytest.raises(UsageError, match=r"--captions .*caps\.json: no such file"):
        CocoSource(images=str(imgs), annotations=str(inst), captions=str(tmp_path / "caps.json")).validate()
    with pytest.raises(UsageError, match=r"--images"):
        run_import(CocoSource(images=str(inst), annotations=str(inst)), ImportOptions(out=str(tmp_path / "o")))
    assert not (tmp_path / "o").exists()  # nothing is written before the arguments are checked


def test_masks_refuse_category_id_zero(tmp_path):
    imgs, _, _ = make_coco(tmp_path)
    inst = tmp_path / "zero.json"
    inst.write_text(json.dumps({"images": [], "categories": [{"id": 0, "name": "background"}]}))
    CocoSource(images=str(imgs), annotations=str(inst)).validate()  # fine without masks
    with pytest.raises(UsageError, match="--masks"):
        CocoSource(images=str(imgs), annotations=str(inst), masks=True).validate()


@pytest.mark.parametrize(
    "url, name, spdx",
    [
        ("http://creativecommons.org/licenses/by/2.0/", "Attribution License", "cc-by-2.0"),
        ("http://creativecommons.org/licenses/by-nc-nd/2.0/", None, "cc-by-nc-nd-2.0"),
        ("https://creativecommons.org/licenses/by-sa/4.0/legalcode", None, "cc-by-sa-4.0"),
        ("https://creativecommons.org/licenses/by/2.0/uk/", None, "cc-by-2.0-uk"),
        ("https://creativecommons.org/publicdomain/zero/1.0/", None, "cc0-1.0"),
        (None, "CC BY-NC-SA 4.0", "cc-by-nc-sa-4.0"),
        (None, "Attribution License", None),
        ("http://www.usa.gov/copyright.shtml", "United States Government Work", None),
        ("http://flickr.com/commons/usage/", "No known copyright restrictions", None),
    ],
)
def test_license_to_spdx(url, name, spdx):
    assert license_to_spdx(url, name) == spdx


def test_rle_string_to_counts_matches_pycocotools(tmp_path):
    rng = np.random.default_rng(0)
    for _ in range(20):
        m = (rng.random((17, 23)) < rng.random()).astype(np.uint8)
        counts = rle_string_to_counts(cocomask.encode(np.asfortranarray(m))["counts"].decode("ascii"))
        assert counts == _uncompressed_counts(m)


def _exif_jpeg(w: int, h: int, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(buf, format="JPEG", exif=exif.tobytes())
    return buf.getvalue()


@pytest.mark.parametrize("orientation", range(2, 9))
def test_exif_moves_match_pil_exif_transpose(orientation):
    from PIL import ImageOps

    from pixelforge.sources.coco import _EXIF_ARRAY, orient_box

    w, h, x, y = 5, 3, 1, 2  # one marked pixel at column x, row y of the stored (raw) pixels
    raw = np.zeros((h, w), np.uint8)
    raw[y, x] = 255
    png = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(raw).save(png, format="PNG", exif=exif.tobytes())
    shown = np.array(ImageOps.exif_transpose(Image.open(io.BytesIO(png.getvalue()))))
    assert np.array_equal(_EXIF_ARRAY[orientation](raw), shown)
    (row,), (col,) = np.nonzero(shown)
    box = orient_box({"x0": x, "y0": y, "x1": x + 1, "y1": y + 1, "label": 1}, orientation, w, h)
    assert (box["x0"], box["y0"], box["x1"], box["y1"]) == (col, row, col + 1, row + 1)


@pytest.mark.parametrize(
    "declared, box, at",
    [
        ((40, 30), {"x0": 22.0, "y0": 2.0, "x1": 27.0, "y1": 12.0, "label": 1}, (5, 25)),  # raw frame: moved
        ((30, 40), {"x0": 2.0, "y0": 3.0, "x1": 12.0, "y1": 8.0, "label": 1}, (5, 5)),  # displayed frame: kept
    ],
)
def test_annotations_follow_exif_rotation(tmp_path, declared, box, at):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    (imgs / "r.jpg").write_bytes(_exif_jpeg(40, 30, 6))  # stored 40x30, displayed 30x40 (90 degrees cw)
    inst = tmp_path / "instances.json"
    w, h = declared
    inst.write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": "r.jpg", "width": w, "height": h}],
                "categories": CATEGORIES,
                "annotations": [
                    {
                        "id": 1,
                        "image_id": 1,
                        "category_id": 1,
                        "bbox": [2, 3, 10, 5],
                        "segmentation": [[2, 3, 12, 3, 12, 8, 2, 8]],
                    }
                ],
            }
        )
    )
    ds = _import(tmp_path, CocoSource(images=str(imgs), annotations=str(inst), masks=True))
    (sample,) = ds.iter_samples()
    assert (sample.row["width"], sample.row["height"]) == (30, 40)
    assert sample.row["boxes"] == [box]
    mask = np.array(Image.open(io.BytesIO(sample.mask)))
    assert mask.shape == (40, 30) and mask[at] == 1 and mask.sum() > 0


def test_declared_size_of_another_image_is_a_bad_annotation(tmp_path):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    (imgs / "a.jpg").write_bytes(_image_bytes(40, 30, "JPEG"))
    inst = tmp_path / "instances.json"
    inst.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg", "width": 50, "height": 50}]}))
    (item,) = CocoSource(images=str(imgs), annotations=str(inst)).records()
    assert item.reason == "bad_annotation" and "40x30" in item.detail and "50x50" in item.detail


def test_cli_imports_coco_and_reports_bad_paths_in_one_line(tmp_path, capsys):
    from pixelforge.cli import main

    imgs, inst, caps = make_coco(tmp_path)
    out = tmp_path / "cli_out"
    code = main(
        [
            "import",
            "coco",
            "--images",
            str(imgs),
            "--annotations",
            str(inst),
            "--captions",
            str(caps),
            "--masks",
            "--out",
            str(out),
            "--json",
        ]
    )
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["samples"] == 3 and result["failures"] == 8
    assert Dataset.open(out).info["lineage"]["config"]["source"]["masks"] is True

    code = main(
        [
            "import",
            "coco",
            "--images",
            str(imgs),
            "--annotations",
            str(tmp_path / "none.json"),
            "--out",
            str(tmp_path / "cli_out2"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("Error: --annotations") and "none.json" in err and err.count("\n") == 1
