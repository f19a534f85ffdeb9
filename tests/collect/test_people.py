"""`collect urls` / `collect crawl` people columns: faces found, listed and blurred; consent and its precedence."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from pixelforge import media
from pixelforge.cli import main
from pixelforge.collect.crawl import CrawlConfig, crawl
from pixelforge.collect.people import boxes_from_cell
from pixelforge.collect.site import SiteServer
from pixelforge.collect.urls import CollectConfig
from pixelforge.errors import UsageError
from pixelforge.faces import BLUR_MARGIN, FaceDetector
from pixelforge.store import Dataset
from pixelforge.store.schema import PEOPLE_FIELDS, PEOPLE_NAMES

skimage_data = pytest.importorskip("skimage.data", reason="scikit-image (the dev extra) ships the photographs")

FAST = ["--allow-private-networks", "--processes", "1", "--timeout", "5", "--retries", "0"]
ASTRONAUT_FACE = [0.3438, 0.1289, 0.5391, 0.3242]  # where the detector finds her face in a 256 px centre crop


def xmp(code: str) -> bytes:
    """An XMP packet with PLUS's model release status ``code`` (UMR, NAP, LMR, NON)."""
    return (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        b'<rdf:Description xmlns:plus="http://ns.useplus.org/ldf/xmp/1.0/" '
        b'plus:ModelReleaseStatus="http://ns.useplus.org/ldf/vocab/MR-' + code.encode() + b'"/>'
        b"</rdf:RDF></x:xmpmeta>"
    )


def jpeg(img: Image.Image, **kw) -> tuple[bytes, str]:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=92, **kw)
    return buf.getvalue(), "image/jpeg"


@pytest.fixture(scope="module")
def photos() -> dict[str, Image.Image]:
    """The astronaut (512 px square, one frontal face) and the coffee cup (600x400, no face)."""
    return {"astronaut": Image.fromarray(skimage_data.astronaut()), "coffee": Image.fromarray(skimage_data.coffee())}


@pytest.fixture()
def people_server(files_server, photos):
    files_server.files.update({f"/people/{name}.jpg": jpeg(img) for name, img in photos.items()})
    return files_server


def write_csv(path, header: list[str], rows: list[list[str]]) -> str:
    import csv

    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return str(path)


def collect(lst: str, out, *args: str) -> dict[str, dict]:
    """Run `collect urls` and return its rows by file name, each with its stored bytes under ``_bytes``."""
    assert main(["collect", "urls", lst, "--out", str(out), *FAST, *args]) == 0
    ds = Dataset.open(str(out))
    return {r["source"].rsplit("/", 1)[-1]: dict(r, _bytes=ds.image_bytes(r)) for r in ds.index().to_pylist()}


def overlap(a, b) -> float:
    """The share of box ``a`` inside box ``b``."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return w * h / ((a[2] - a[0]) * (a[3] - a[1]))


def test_detect_finds_the_face_and_blur_hides_it_in_the_stored_image(people_server, tmp_path, capsys):
    lst = write_csv(
        tmp_path / "l.csv", ["url"], [[people_server.url(f"/people/{n}.jpg")] for n in ("astronaut", "coffee")]
    )
    plain = collect(lst, tmp_path / "plain")
    detect = collect(lst, tmp_path / "detect", "--faces", "detect")
    blur = collect(lst, tmp_path / "blur", "--faces", "blur")
    capsys.readouterr()
    # without --faces nothing is looked for: unknown, not zero; consent unknown from nowhere
    for r in plain.values():
        assert [r[n] for n in PEOPLE_NAMES] == [None, None, None, "unknown", None]
    a, c = detect["astronaut.jpg"], detect["coffee.jpg"]
    assert a["n_faces"] == 1 and a["face_bboxes"][0] == pytest.approx(ASTRONAUT_FACE, abs=0.02)
    assert c["n_faces"] == 0 and c["face_bboxes"] == []
    assert a["faces_blurred"] is False and c["faces_blurred"] is False  # looked for, not blurred (even 0 faces)
    assert a["_bytes"] == plain["astronaut.jpg"]["_bytes"]  # detect changes no pixel
    # blur: the same faces, blurred in the stored bytes; sha256 stays the download's, phash is the stored pixels'
    b = blur["astronaut.jpg"]
    assert b["face_bboxes"] == a["face_bboxes"] and b["n_faces"] == 1 and b["faces_blurred"] is True
    assert b["_bytes"] != a["_bytes"] and b["sha256"] == a["sha256"]
    stored = media.decode(b["_bytes"])
    assert bin(media.phash64(stored) ^ b["phash"]).count("1") <= 2 and b["phash"] != a["phash"]
    detector = FaceDetector()
    (found,) = detector.detect(media.decode(a["_bytes"]))  # the stored image is what was looked in
    assert found == pytest.approx(a["face_bboxes"][0], abs=1e-4)
    assert [f for f in detector.detect(stored) if overlap(f, b["face_bboxes"][0]) > 0.3] == []
    # no face: nothing to blur, nothing re-encoded, yet every face found (none) is blurred
    assert blur["coffee.jpg"]["faces_blurred"] is True and blur["coffee.jpg"]["n_faces"] == 0
    assert blur["coffee.jpg"]["_bytes"] == c["_bytes"]


def test_bbox_col_boxes_follow_the_crop_and_are_blurred_without_faces(people_server, tmp_path, capsys):
    coffee, astronaut = people_server.url("/people/coffee.jpg"), people_server.url("/people/astronaut.jpg")
    # coffee is 600x400: the 256 px centre crop keeps x 100..500, so x 0.25..0.5 -> 0.125..0.5; x 0..0.1 is cut away
    rows = [[coffee, "[[0.25, 0.25, 0.5, 0.5], [0.0, 0.1, 0.1, 0.2]]"], [astronaut, json.dumps([ASTRONAUT_FACE])]]
    lst = write_csv(tmp_path / "l.csv", ["url", "faces"], rows)
    plain = collect(lst, tmp_path / "plain")
    listed = collect(lst, tmp_path / "listed", "--bbox-col", "faces")
    detect = collect(lst, tmp_path / "detect", "--bbox-col", "faces", "--faces", "detect")
    blur = collect(lst, tmp_path / "blur", "--bbox-col", "faces", "--faces", "blur")
    capsys.readouterr()
    box = [0.125, 0.25, 0.5, 0.5]
    r = listed["coffee.jpg"]
    assert r["n_faces"] == 1 and r["face_bboxes"][0] == pytest.approx(box, abs=1e-4) and r["faces_blurred"] is True
    # the pixels in the box (grown by blur_faces' margin) change, the rest only by nothing (JPEG's 16 px blocks)
    before = np.asarray(media.decode(plain["coffee.jpg"]["_bytes"])).astype(int)
    after = np.asarray(media.decode(r["_bytes"])).astype(int)
    diff = np.abs(before - after).max(axis=2)
    x0, y0, x1, y1 = (v * 256 for v in box)
    assert diff[int(y0) : int(y1), int(x0) : int(x1)].mean() > 20
    gx, gy = BLUR_MARGIN * (x1 - x0) + 16, BLUR_MARGIN * (y1 - y0) + 16
    outside = np.ones(diff.shape, bool)
    outside[max(0, int(y0 - gy)) : int(y1 + gy) + 1, max(0, int(x0 - gx)) : int(x1 + gx) + 1] = False
    assert diff[outside].max() <= 2  # measured 0: JPEG blocks away from the blur encode the same
    assert r["sha256"] == plain["coffee.jpg"]["sha256"]
    # --faces detect: the list's boxes are listed, nothing is blurred
    d = detect["coffee.jpg"]
    assert d["face_bboxes"] == r["face_bboxes"] and d["faces_blurred"] is False
    assert d["_bytes"] == plain["coffee.jpg"]["_bytes"]
    # a detected face that is a listed one is kept once (the list's box)
    for rows_ in (detect, blur):
        a = rows_["astronaut.jpg"]
        assert a["n_faces"] == 1 and a["face_bboxes"][0] == pytest.approx(ASTRONAUT_FACE, abs=1e-4)
    assert blur["astronaut.jpg"]["faces_blurred"] is True and blur["coffee.jpg"]["_bytes"] == r["_bytes"]


def test_boxes_follow_pad_keep_ratio_and_crop():
    def moved(box, w, h, size, mode):
        return [[round(v, 6) for v in b] for b in media.boxes_after_resize([box], w, h, size, mode)]

    # 600x400 padded to 256: 256x171 pasted 42 px down (media.resize's arithmetic)
    assert moved([0.0, 0.0, 1.0, 1.0], 600, 400, 256, "pad") == [[0.0, round(42 / 256, 6), 1.0, round(213 / 256, 6)]]
    assert moved([0.1, 0.2, 0.3, 0.4], 600, 400, 256, "keep_ratio") == [[0.1, 0.2, 0.3, 0.4]]
    assert moved([0.1, 0.2, 0.3, 0.4], 600, 400, 256, "none") == [[0.1, 0.2, 0.3, 0.4]]
    # a tall image's centre crop keeps y 200..600 of 800: a box across the whole height is clipped to it
    assert moved([0.5, 0.0, 1.0, 1.0], 400, 800, 100, "center_crop") == [[0.5, 0.0, 1.0, 1.0]]
    assert moved([0.0, 0.3, 1.0, 0.5], 400, 800, 100, "center_crop") == [[0.0, 0.1, 1.0, 0.5]]
    assert moved([0.0, 0.0, 1.0, 0.2], 400, 800, 100, "center_crop") == []  # cut away: not in the image


def test_bad_bbox_cells_keep_the_row_and_say_why_in_meta(people_server, tmp_path, capsys):
    urls = [people_server.url(f"/people/coffee.jpg?{i}") for i in range(5)]
    cells = ["oops", "[[0.5, 0.2, 0.4, 0.3]]", "[0.1, 0.1, 0.2, 0.2]", "[]", ""]
    lst = write_csv(tmp_path / "l.csv", ["url", "faces"], [[u, c] for u, c in zip(urls, cells, strict=True)])
    assert main(["collect", "urls", lst, "--out", str(tmp_path / "o"), "--bbox-col", "faces", *FAST]) == 0
    capsys.readouterr()
    rows = Dataset.open(str(tmp_path / "o")).index().to_pylist()
    assert len(rows) == 5
    errors = [json.loads(r["meta"] or "{}").get("bbox_error") for r in rows]
    assert errors[0].startswith("--bbox-col faces: not JSON")
    assert "box 0 [0.5, 0.2, 0.4, 0.3]: not [x0, y0, x1, y1] with 0 <= x0 < x1 <= 1" in errors[1]
    assert "box 0 0.1: not [x0, y0, x1, y1]" in errors[2]
    assert errors[3:] == [None, None]
    faces = [(r["face_bboxes"], r["n_faces"], r["faces_blurred"]) for r in rows]
    assert faces[:3] == [(None, None, None)] * 3  # boxes ignored: nothing listed, nothing looked for
    assert faces[3] == ([], 0, True)  # the list says: no face here
    assert faces[4] == (None, None, None)  # a blank cell says nothing
    assert boxes_from_cell([[0, 0, 1, 1]]) == ([[0.0, 0.0, 1.0, 1.0]], None)  # Parquet / JSONL lists as they are
    assert boxes_from_cell([[0, 0, True, 1]])[1] is not None


def test_consent_list_beats_xmp_beats_the_option(files_server, photos, tmp_path, capsys):
    coffee = photos["coffee"]
    files_server.files.update(
        {
            "/c/non-1.jpg": jpeg(coffee, xmp=xmp("NON")),
            "/c/non-2.jpg": jpeg(coffee, xmp=xmp("NON")),
            "/c/umr-1.jpg": jpeg(coffee, xmp=xmp("UMR")),
            "/c/umr-2.jpg": jpeg(coffee, xmp=xmp("UMR")),
            "/c/plain-1.jpg": jpeg(coffee),
            "/c/plain-2.jpg": jpeg(coffee),
        }
    )
    cells = {"non-1": "yes", "non-2": "", "umr-1": "", "plain-1": "", "plain-2": "maybe", "umr-2": "No"}
    lst = write_csv(tmp_path / "l.csv", ["url", "ok"], [[files_server.url(f"/c/{n}.jpg"), v] for n, v in cells.items()])
    rows = collect(lst, tmp_path / "o", "--consent-col", "ok", "--consent", "denied")
    got = {k[:-4]: (r["consent"], r["consent_source"]) for k, r in rows.items()}
    assert got == {
        "non-1": ("granted", "list:ok"),  # the list's word wins over the file's
        "non-2": ("denied", "xmp:MR-NON"),  # a blank cell says nothing: the file's release speaks
        "umr-1": ("granted", "xmp:MR-UMR"),
        "plain-1": ("denied", "option"),  # neither: --consent
        "plain-2": ("unknown", "list:ok (unreadable 'maybe')"),  # unreadable: unknown, still collected
        "umr-2": ("denied", "list:ok"),
    }
    assert media.model_release(rows["non-2.jpg"]["_bytes"]) is None  # read from the download, not the stored copy
    plain = collect(lst, tmp_path / "p")
    capsys.readouterr()
    got = {k[:-4]: (r["consent"], r["consent_source"]) for k, r in plain.items()}
    assert got["non-1"] == ("denied", "xmp:MR-NON") and got["plain-1"] == ("unknown", None)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--consent", "maybe"], "Error: --consent 'maybe': choose one of granted, denied, unknown"),
        (["--faces", "hide"], "Error: --faces 'hide': choose one of none, detect, blur"),
        (["--consent-col", "agreed"], "Error: --consent-col 'agreed' is not a column of"),
        (["--bbox-col", "boxes"], "Error: --bbox-col 'boxes' is not a column of"),
        (["--face-weights", "WEIGHTS"], "Error: --face-weights needs --faces detect or --faces blur"),
        (["--faces", "detect", "--face-weights", "missing.onnx"], "Error: --face-weights missing.onnx: no such file"),
        (["--faces", "blur", "--face-weights", "WEIGHTS"], "not a YuNet ONNX model OpenCV can load"),
        (["--consent-col", "ok", "TXT"], "Error: --consent-col 'ok': "),
    ],
)
def test_bad_flags_are_one_line_errors_before_any_download(people_server, tmp_path, capsys, args, message):
    weights = tmp_path / "yunet.onnx"
    weights.write_bytes(b"not an onnx model")
    lst = write_csv(tmp_path / "l.csv", ["url", "ok"], [[people_server.url("/people/coffee.jpg"), "yes"]])
    if "TXT" in args:
        args = [a for a in args if a != "TXT"]
        lst = str(tmp_path / "l.txt")
        (tmp_path / "l.txt").write_text(people_server.url("/people/coffee.jpg") + "\n")
    args = [str(weights) if a == "WEIGHTS" else a for a in args]
    out = tmp_path / "out"
    assert main(["collect", "urls", lst, "--out", str(out), *FAST, *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.startswith("Error: ") and "\n" not in err
    assert not out.exists() and not people_server.hits  # stopped before any request


@pytest.fixture(scope="module")
def site():
    with SiteServer() as srv:
        yield srv


def test_crawl_writes_the_same_people_columns(site, people_server, tmp_path, capsys):
    out = tmp_path / "crawl"
    args = [
        "collect",
        "crawl",
        site.url("/gallery/1.html"),
        "--out",
        str(out),
        "--allow-private-networks",
        "--delay",
        "0",
    ]
    args += ["--processes", "1", "--image-size", "32", "--max-pages", "1", "--faces", "detect", "--consent", "granted"]
    assert main(args) == 0
    lst = write_csv(tmp_path / "l.csv", ["url"], [[people_server.url("/people/coffee.jpg")]])
    collect(lst, tmp_path / "urls")
    capsys.readouterr()
    crawled, listed = Dataset.open(str(out)), Dataset.open(str(tmp_path / "urls"))
    assert crawled.schema == listed.schema  # one schema for every collected dataset
    assert [f for f in crawled.extra_fields] == list(PEOPLE_FIELDS)
    assert crawled.info["extra_columns"] == listed.info["extra_columns"]
    rows = crawled.index().to_pylist()
    assert rows and all(r["source_kind"] == "crawl" for r in rows)
    assert {(r["consent"], r["consent_source"], r["faces_blurred"]) for r in rows} == {("granted", "option", False)}
    assert all(r["n_faces"] == len(r["face_bboxes"]) for r in rows)
    # a crawl has no list: list columns are refused
    config = CrawlConfig(seeds=(site.url("/"),), download=CollectConfig(allow_private_networks=True, bbox_col="faces"))
    with pytest.raises(UsageError, match="--bbox-col 'faces': a crawl has no list columns"):
        crawl(str(tmp_path / "never"), config)


def test_a_failing_face_step_fails_that_sample_only(people_server, tmp_path, monkeypatch, capsys):
    from pixelforge.collect import people

    real = FaceDetector.detect

    def detect(self, img):
        if real(self, img):  # the astronaut: OpenCV fails on her image
            raise RuntimeError("cv2.error: out of memory")
        return []

    monkeypatch.setattr(FaceDetector, "detect", detect)
    people._DETECTORS.clear()
    lst = write_csv(
        tmp_path / "l.csv", ["url"], [[people_server.url(f"/people/{n}.jpg")] for n in ("astronaut", "coffee")]
    )
    assert main(["collect", "urls", lst, "--out", str(tmp_path / "o"), "--faces", "detect", *FAST]) == 0
    capsys.readouterr()
    ds = Dataset.open(str(tmp_path / "o"))
    (fail,) = ds.failures().to_pylist()
    assert fail["reason"] == "decode_error" and "face step failed: RuntimeError" in fail["detail"]
    assert [r["source"].rsplit("/", 1)[-1] for r in ds.index().to_pylist()] == ["coffee.jpg"]


def test_resume_with_blur_gives_the_same_dataset(people_server, tmp_path, monkeypatch, capsys):
    from pixelforge.collect import urls as urls_mod

    urls = [people_server.url("/people/astronaut.jpg")] + [people_server.url(f"/img/{i}.jpg") for i in range(5)]
    lst = write_csv(tmp_path / "l.csv", ["url"], [[u] for u in urls])
    args = ["--faces", "blur", "--samples-per-shard", "2"]
    whole = collect(lst, tmp_path / "whole", *args)
    real_shard = urls_mod.collect_shard

    def killed_at_the_third_shard(task):
        if task.shard_id == 2:
            raise KeyboardInterrupt  # the run dies with two of its three shards finished
        return real_shard(task)

    monkeypatch.setattr(urls_mod, "collect_shard", killed_at_the_third_shard)
    killed = tmp_path / "killed"
    assert main(["collect", "urls", lst, "--out", str(killed), *FAST, *args]) == 130
    assert sorted(p.name for p in (killed / "shards").glob("*.tar")) == ["000000.tar", "000001.tar"]
    monkeypatch.setattr(urls_mod, "collect_shard", real_shard)
    assert main(["collect", "urls", lst, "--out", str(killed), *FAST, *args, "--resume"]) == 0
    capsys.readouterr()
    ds = Dataset.open(str(killed))
    assert ds.stats()["shards_resumed"] == 2
    again = {r["source"].rsplit("/", 1)[-1]: dict(r, _bytes=ds.image_bytes(r)) for r in ds.index().to_pylist()}
    same = ("sha256", "phash", "_bytes", *PEOPLE_NAMES)
    assert {k: [r[n] for n in same] for k, r in again.items()} == {k: [r[n] for n in same] for k, r in whole.items()}
    assert whole["astronaut.jpg"]["faces_blurred"] is True and whole["astronaut.jpg"]["n_faces"] == 1


def test_retry_keeps_the_people_options_and_carries_an_older_collection(people_server, tmp_path, capsys):
    import pyarrow.parquet as pq

    urls = [people_server.url("/people/astronaut.jpg"), people_server.url("/recover/1.jpg")]
    lst = write_csv(tmp_path / "l.csv", ["url", "ok"], [[urls[0], "yes"], [urls[1], ""]])
    first = collect(lst, tmp_path / "a", "--faces", "blur", "--consent-col", "ok", "--consent", "denied")
    assert list(first) == ["astronaut.jpg"]
    people_server.recovered = True
    assert main(["collect", "retry", str(tmp_path / "a"), "--out", str(tmp_path / "b")]) == 0
    rows = {r["source"].rsplit("/", 1)[-1]: r for r in Dataset.open(str(tmp_path / "b")).index().to_pylist()}
    assert [rows["astronaut.jpg"][n] for n in PEOPLE_NAMES[1:]] == [1, True, "granted", "list:ok"]
    assert [rows["1.jpg"][n] for n in PEOPLE_NAMES] == [[], 0, True, "denied", "option"]  # the same options
    # a collection made before the people columns: its carried rows read as not looked for, consent unknown
    index = tmp_path / "a" / "index.parquet"
    pq.write_table(pq.read_table(index).drop_columns(list(PEOPLE_NAMES)), index)
    assert main(["collect", "retry", str(tmp_path / "a"), "--out", str(tmp_path / "c")]) == 0
    rows = {r["source"].rsplit("/", 1)[-1]: r for r in Dataset.open(str(tmp_path / "c")).index().to_pylist()}
    assert [rows["astronaut.jpg"][n] for n in PEOPLE_NAMES] == [None] * 5
    assert [rows["1.jpg"][n] for n in PEOPLE_NAMES] == [[], 0, True, "denied", "option"]
