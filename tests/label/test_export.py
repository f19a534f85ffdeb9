"""pixelforge export --format yolo|labelstudio, and COCO segmentations (polygons / RLE) from mask PNGs."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from pixelforge.cli import main
from pixelforge.store import Dataset, DatasetBuilder, Lineage


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture()
def masked(tmp_path) -> str:
    """One 20x20 image: a category-3 square (pixels 2..7) with a box, and a lone category-5 pixel without one."""
    mask = np.zeros((20, 20), np.uint8)
    mask[2:8, 2:8] = 3
    mask[15, 15] = 5
    out = tmp_path / "masked"
    b = DatasetBuilder(str(out))
    b.add(
        {
            "key": "m0",
            "source_kind": "folder",
            "width": 20,
            "height": 20,
            "label": None,
            "boxes": [{"x0": 1.0, "y0": 1.0, "x1": 10.0, "y1": 10.0, "label": 3}],
            "license": "cc0-1.0",
        },
        _png(np.full((20, 20, 3), 128, np.uint8)),
        "png",
        mask=_png(mask),
    )
    b.finish(name="masked", lineage=Lineage("test"))
    return str(out)


def test_coco_segmentations_from_masks(masked, tmp_path):
    from pycocotools import mask as cocomask

    out = tmp_path / "coco"
    assert main(["export", masked, "--format", "coco", "--out", str(out)]) == 0
    anns = json.loads((out / "instances.json").read_text())["annotations"]
    assert len(anns) == 2
    square, dot = anns
    assert square["category_id"] == 3 and square["bbox"] == [1.0, 1.0, 9.0, 9.0] and square["area"] == 36
    assert square["segmentation"] == [[2.0, 2.0, 2.0, 7.0, 7.0, 7.0, 7.0, 2.0]]  # the square's outline
    # the lone pixel has no polygon: compressed RLE that decodes to exactly that pixel
    assert dot["category_id"] == 5 and dot["bbox"] == [15, 15, 1, 1] and dot["area"] == 1
    decoded = cocomask.decode({"size": dot["segmentation"]["size"], "counts": dot["segmentation"]["counts"]})
    assert decoded.sum() == 1 and decoded[15, 15] == 1
    # back in through the COCO importer with --masks: the square survives as category 3
    assert (
        main(
            [
                "import",
                "coco",
                "--images",
                str(out / "images"),
                "--annotations",
                str(out / "instances.json"),
                "--masks",
                "--out",
                str(tmp_path / "back"),
            ]
        )
        == 0
    )
    sample = next(Dataset.open(str(tmp_path / "back")).iter_samples())
    back = np.asarray(Image.open(io.BytesIO(sample.mask)))
    assert back[15, 15] == 5 and (back[2:8, 2:8] == 3).mean() > 0.6 and (back == 3).sum() <= 36


def test_yolo_export(shapes, tmp_path):
    out = tmp_path / "yolo"
    assert main(["export", shapes, "--format", "yolo", "--out", str(out)]) == 0
    rows = {r["key"]: r for r in Dataset.open(shapes).iter_rows()}
    assert len(list((out / "images").iterdir())) == 12 and len(list((out / "labels").iterdir())) == 12
    r = rows["000000000"]
    (b,) = r["boxes"]
    cls, cx, cy, w, h = (out / "labels" / "000000000.txt").read_text().split()
    assert int(cls) == b["label"]
    assert float(cx) == pytest.approx((b["x0"] + b["x1"]) / 64, abs=1e-6)
    assert float(h) == pytest.approx((b["y1"] - b["y0"]) / 32, abs=1e-6)
    yaml = (out / "data.yaml").read_text()
    names = {int(r["label"]): r["label_name"] for r in rows.values()}
    nc = max(names) + 1
    assert f"nc: {nc}" in yaml and all(f'  {i}: "{n}"' in yaml for i, n in names.items())


def test_labelstudio_export(shapes, tmp_path):
    out = tmp_path / "ls"
    assert main(["export", shapes, "--format", "labelstudio", "--out", str(out)]) == 0
    tasks = json.loads((out / "tasks.json").read_text())
    rows = {r["key"]: r for r in Dataset.open(shapes).iter_rows()}
    assert len(tasks) == 12
    t = tasks[0]
    r = rows[t["data"]["pixelforge_key"]]
    assert t["data"]["image"] == f"/data/local-files/?d=images/{r['member']}"
    result = {x["type"]: x for x in t["annotations"][0]["result"]}
    assert result["choices"]["value"]["choices"] == [r["label_name"]]
    assert result["textarea"]["value"]["text"] == [r["caption"]]
    box = result["rectanglelabels"]["value"]
    assert box["x"] == pytest.approx(100 * r["boxes"][0]["x0"] / 32) and box["rectanglelabels"] == [r["label_name"]]
    xml = (out / "label_config.xml").read_text()
    assert '<Choices name="label" toName="image"' in xml and f'<Label value="{r["label_name"]}"/>' in xml


def test_export_format_choices(shapes, tmp_path, capsys):
    assert main(["export", shapes, "--format", "voc", "--out", str(tmp_path / "v")]) == 2
    assert "choose one of imagefolder, coco, yolo, labelstudio" in capsys.readouterr().err
