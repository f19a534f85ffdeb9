"""Faces: found in a real photograph and not in others, blurred beyond finding, as curate columns and in prepare."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pixelforge.cli import main
from pixelforge.faces import FaceDetector, blur_faces
from pixelforge.store import Dataset

skimage_data = pytest.importorskip("skimage.data", reason="scikit-image (the dev extra) ships the photographs")


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return Image.fromarray(skimage_data.astronaut())


def test_the_astronauts_face_is_found_and_nothing_in_photos_without_faces(detector, astronaut):
    (box,) = detector.detect(astronaut)
    assert box == pytest.approx([0.3438, 0.1289, 0.5391, 0.3242], abs=0.02)  # around her face
    for name in ("coffee", "chelsea", "rocket", "brick", "moon", "coins", "hubble_deep_field"):
        a = getattr(skimage_data, name)()
        assert detector.detect(Image.fromarray(a if a.ndim == 3 else a.astype(np.uint8))) == [], name


def overlap(a, b) -> float:
    """The share of box ``a`` inside box ``b``."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return w * h / ((a[2] - a[0]) * (a[3] - a[1]))


def test_a_blurred_face_is_not_found_again_and_the_rest_is_untouched(detector, astronaut):
    boxes = detector.detect(astronaut)
    blurred = blur_faces(astronaut, boxes)
    # nothing is found where the face was (the cascade equalises the whole histogram first, so a false
    # face can appear elsewhere: on her shoulder, here)
    assert [b for b in detector.detect(blurred) if overlap(b, boxes[0]) > 0.3] == []
    a, b = np.asarray(astronaut).astype(int), np.asarray(blurred).astype(int)
    w, h = astronaut.size
    x0, y0, x1, y1 = boxes[0]
    grow = 0.15 * (x1 - x0)
    outside = np.ones((h, w), bool)
    outside[
        int((y0 - grow) * h) - 1 : int((y1 + grow) * h) + 2, int((x0 - grow) * w) - 1 : int((x1 + grow) * w) + 2
    ] = False
    assert np.array_equal(a[outside], b[outside])
    assert np.abs(a[~outside] - b[~outside]).mean() > 10


def test_curate_faces_fills_the_columns_and_prepare_blurs_them(tmp_path, astronaut):
    folder = tmp_path / "photos"
    folder.mkdir()
    astronaut.crop((0, 0, 512, 400)).save(folder / "wide.jpg", quality=92)  # not square: prepare crops it
    Image.fromarray(skimage_data.coffee()).save(folder / "coffee.jpg", quality=92)
    plain, found = tmp_path / "plain", tmp_path / "found"
    assert main(["curate", str(folder), "--out", str(plain), "--only", "duplicates"]) == 0
    assert main(["curate", str(folder), "--out", str(found), "--only", "duplicates", "--faces"]) == 0
    rows = {r["source"].rsplit("/", 1)[-1]: r for r in pq.read_table(found / "index.parquet").to_pylist()}
    assert rows["coffee.jpg"]["face_bboxes"] == [] and rows["coffee.jpg"]["n_faces"] == 0
    assert rows["wide.jpg"]["n_faces"] == 1
    (x0, y0, x1, y1) = rows["wide.jpg"]["face_bboxes"][0]
    assert (x0 * 512, y0 * 400) == pytest.approx((176, 66), abs=10)
    imported, curated = tmp_path / "imported", tmp_path / "curated"  # the dataset route finds the same faces
    assert main(["import", "folder", str(folder), "--out", str(imported)]) == 0
    assert main(["curate", str(imported), "--out", str(curated), "--only", "duplicates", "--faces"]) == 0
    again = {r["source"].rsplit("/", 1)[-1]: r for r in pq.read_table(curated / "index.parquet").to_pylist()}
    assert {k: r["face_bboxes"] for k, r in again.items()} == {k: r["face_bboxes"] for k, r in rows.items()}
    nulls = pq.read_table(plain / "index.parquet", columns=["face_bboxes", "n_faces"]).to_pylist()
    assert nulls == [{"face_bboxes": None, "n_faces": None}] * 2  # not looked for: unknown, not zero
    moved = tmp_path / "moved"  # without --blur-faces the boxes still follow the crop
    assert main(["prepare", str(found), "--out", str(moved), "--size", "200"]) == 0
    boxes = {s.row["source"].rsplit("/", 1)[-1]: s.row["face_bboxes"] for s in Dataset.open(str(moved)).iter_samples()}
    assert boxes["wide.jpg"][0][0] * 400 + 56 == pytest.approx(x0 * 512, abs=1) and boxes["coffee.jpg"] == []
    prepared = tmp_path / "prepared"
    assert main(["prepare", str(found), "--out", str(prepared), "--size", "200", "--blur-faces"]) == 0
    detector = FaceDetector()
    for s in Dataset.open(str(prepared)).iter_samples():
        assert detector.detect(s.decode()) == []
        if s.row["source"].endswith("wide.jpg"):
            # the 400 px centre square of 512 x 400, scaled to 200: the box moved with the crop
            (bx0, by0, bx1, by1) = s.row["face_bboxes"][0]
            assert bx0 * 400 + 56 == pytest.approx(x0 * 512, abs=1) and by0 == pytest.approx(y0, abs=0.01)
            assert s.row["n_faces"] == 1


def test_prepare_finds_faces_itself_without_the_column(tmp_path, astronaut):
    folder = tmp_path / "photos"
    folder.mkdir()
    astronaut.save(folder / "a.png")
    ds, out = tmp_path / "ds", tmp_path / "out"
    assert main(["import", "folder", str(folder), "--out", str(ds)]) == 0
    assert main(["prepare", str(ds), "--out", str(out), "--size", "128", "--blur-faces"]) == 0
    (sample,) = Dataset.open(str(out)).iter_samples()
    assert FaceDetector().detect(sample.decode().resize((512, 512))) == []
    # blurring states what it did, whether or not the input had the people columns
    assert (sample.row["n_faces"], sample.row["faces_blurred"]) == (1, True)
    assert len(sample.row["face_bboxes"]) == 1


def test_faces_found_once_are_kept_by_later_stages_that_do_not_look(tmp_path, astronaut):
    folder = tmp_path / "photos"
    folder.mkdir()
    astronaut.save(folder / "a.png")
    Image.fromarray(skimage_data.coffee()).save(folder / "coffee.png")
    found, again, prepared = tmp_path / "found", tmp_path / "again", tmp_path / "prepared"
    assert main(["curate", str(folder), "--out", str(found), "--only", "duplicates", "--faces"]) == 0
    # curate without --faces keeps what an earlier step found (not looked for here is not none found)
    assert main(["curate", str(found), "--out", str(again), "--only", "duplicates"]) == 0
    before = {r["key"]: (r["face_bboxes"], r["n_faces"]) for r in Dataset.open(str(found)).index().to_pylist()}
    after = {r["key"]: (r["face_bboxes"], r["n_faces"]) for r in Dataset.open(str(again)).index().to_pylist()}
    assert after == before and sorted(n for _, n in after.values()) == [0, 1]
    args = ["prepare", str(again), "--out", str(prepared), "--size", "64", "--blur-faces"]
    assert main([*args, "--augment", "hflip", "--copies", "1"]) == 0
    rows = {r["key"]: r for r in Dataset.open(str(prepared)).index().to_pylist()}
    for key, (_, n) in before.items():
        assert (rows[key]["n_faces"], rows[key]["faces_blurred"], len(rows[key]["face_bboxes"])) == (n, True, n)
        copy = rows[f"{key}_aug1"]  # moved by the augmentation: boxes unknown, the faces and their blur stay
        assert (copy["face_bboxes"], copy["n_faces"], copy["faces_blurred"]) == (None, n, True)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["curate", "IN", "--out", "OUT", "--face-weights", "x.onnx"], "--face-weights needs --faces"),
        (
            ["curate", "IN", "--out", "OUT", "--faces", "--face-weights", "x.onnx"],
            "--face-weights x.onnx: no such file",
        ),
        (["prepare", "DS", "--out", "OUT", "--face-weights", "x.onnx"], "--face-weights needs --blur-faces"),
    ],
)
def test_face_options_are_checked_before_any_work(tmp_path, capsys, args, message):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.new("RGB", (32, 32)).save(folder / "a.png")
    ds = tmp_path / "ds"
    assert main(["import", "folder", str(folder), "--out", str(ds)]) == 0
    capsys.readouterr()
    args = [
        str(folder) if a == "IN" else str(ds) if a == "DS" else str(tmp_path / "o") if a == "OUT" else a for a in args
    ]
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_file_that_is_no_yunet_model_is_a_usage_error(tmp_path):
    from pixelforge.errors import UsageError
    from pixelforge.faces import FaceSettings

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx model")
    with pytest.raises(UsageError, match="not a YuNet ONNX model OpenCV can load"):
        FaceDetector(FaceSettings(weights=str(bad)))
