"""Tests for generate and verify: determinism, provenance rows, watermark and metadata detection."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from pixelforge.cli import main
from pixelforge.generate.mark import block_bits, embed_watermark, payload_bits, read_watermark, upscale_for_mark
from pixelforge.store import Dataset

TRAIN = [
    "--batch-size",
    "16",
    "--eval-every",
    "2",
    "--max-steps",
    "2",
    "--device",
    "cpu",
    "--sample-steps",
    "2",
    "--val-batches",
    "1",
]


@pytest.fixture(scope="module")
def class_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    assert main(["import", "digits", "--out", str(root / "digits")]) == 0
    assert (
        main(
            [
                "train",
                "diffusion",
                "--data",
                str(root / "digits"),
                "--out",
                str(root / "run"),
                "--condition",
                "class",
                "--image-size",
                "8",
                *TRAIN,
            ]
        )
        == 0
    )
    return root / "run"


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("gentext")
    assert main(["import", "shapes", "--n", "48", "--size", "16", "--out", str(root / "shapes")]) == 0
    assert (
        main(
            [
                "train",
                "diffusion",
                "--data",
                str(root / "shapes"),
                "--out",
                str(root / "run"),
                "--condition",
                "text",
                "--image-size",
                "16",
                *TRAIN,
            ]
        )
        == 0
    )
    return root / "run"


def test_same_seed_same_images_and_provenance(class_run, tmp_path):
    args = ["generate", str(class_run), "--class", "3", "--class", "7", "--n", "2", "--steps", "3", "--seed", "11"]
    assert main(args + ["--out", str(tmp_path / "a")]) == 0
    assert main(args + ["--out", str(tmp_path / "b")]) == 0
    assert main(args[:-1] + ["12", "--out", str(tmp_path / "c")]) == 0
    a, b, c = (sorted((tmp_path / d / "images").iterdir()) for d in "abc")
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    assert [p.read_bytes() for p in a] != [p.read_bytes() for p in c]
    rows = Dataset.open(str(tmp_path / "a")).index().to_pylist()
    assert [(r["label"], r["label_name"]) for r in rows] == [(3, "3"), (3, "3"), (7, "7"), (7, "7")]
    assert {r["source_kind"] for r in rows} == {"generated"}
    meta = json.loads(rows[0]["meta"])
    assert (meta["sampler"], meta["steps"], meta["guidance"], meta["seed"]) == ("ddim", 3, 2.0, 11)
    assert (rows[0]["width"], rows[0]["orig_width"]) == (256, 8)  # marked at 256 px
    img = Image.open(a[0])
    assert img.text["ai_generated"] == "true" and img.text["prompt"] == "3" and img.text["seed"] == "11"


def test_text_run_generates_from_prompts(text_run, tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text(
        "a large red circle in the center on a blue background\n\na small white star in the top left "
        "on a black background\n"
    )
    assert (
        main(
            [
                "generate",
                str(text_run),
                "--prompts",
                str(prompts),
                "--n",
                "1",
                "--steps",
                "2",
                "--sampler",
                "dpm++",
                "--out",
                str(tmp_path / "g"),
            ]
        )
        == 0
    )
    rows = Dataset.open(str(tmp_path / "g")).index().to_pylist()
    assert [r["caption"] for r in rows] == [
        "a large red circle in the center on a blue background",
        "a small white star in the top left on a black background",
    ]
    assert {r["caption_source"] for r in rows} == {"generated"}


def test_wrong_condition_arguments(class_run, text_run, tmp_path, capsys):
    assert main(["generate", str(class_run), "--prompt", "a cat", "--out", str(tmp_path / "x")]) == 2
    assert "class-conditioned: pass --class NAME (one of 0, 1" in capsys.readouterr().err
    assert main(["generate", str(class_run), "--class", "11", "--out", str(tmp_path / "x")]) == 2
    assert "--class '11': choose one of" in capsys.readouterr().err
    assert main(["generate", str(text_run), "--out", str(tmp_path / "x")]) == 2
    assert "text-conditioned: pass --prompt" in capsys.readouterr().err
    assert main(["generate", str(tmp_path), "--n", "1", "--out", str(tmp_path / "x")]) == 2
    assert "is not a training run" in capsys.readouterr().err


def test_verify_marked_reencoded_and_unmarked(class_run, tmp_path, capsys):
    assert (
        main(["generate", str(class_run), "--class", "5", "--n", "1", "--steps", "3", "--out", str(tmp_path / "g")])
        == 0
    )
    (marked,) = sorted((tmp_path / "g" / "images").iterdir())
    Image.open(marked).convert("RGB").save(tmp_path / "reencoded.jpg", "JPEG", quality=90)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(tmp_path / "plain.png")
    capsys.readouterr()
    assert main(["verify", str(marked), str(tmp_path / "reencoded.jpg"), str(tmp_path / "plain.png"), "--json"]) == 0
    got = {r["path"].rsplit("/", 1)[-1]: r for r in json.loads(capsys.readouterr().out)}
    m, j, p = got[marked.name], got["reencoded.jpg"], got["plain.png"]
    assert m["watermark_found"] and m["metadata_found"] and m["bits_matched"] == 32
    assert m["verdict"] == "generated by pixelforge" and m["metadata"]["prompt"] == "5"
    assert j["watermark_found"] and not j["metadata_found"] and j["bits_matched"] >= 30
    assert not p["watermark_found"] and not p["metadata_found"] and p["verdict"] == "no mark found"
    assert main(["verify", str(tmp_path / "missing.png")]) == 2


@pytest.mark.parametrize("quality, min_bits", [(None, 32), (90, 31), (75, 29)])
def test_watermark_survives_reencoding_at_256(quality, min_bits):
    matched = []
    for seed in range(4):
        small = Image.fromarray(np.random.default_rng(seed).integers(0, 255, (8, 8, 3), dtype=np.uint8))
        img = upscale_for_mark(small.resize((32, 32), Image.BICUBIC), 256)
        marked = embed_watermark(img, "run-a")
        buf = io.BytesIO()
        marked.save(buf, "PNG") if quality is None else marked.save(buf, "JPEG", quality=quality)
        reading = read_watermark(Image.open(io.BytesIO(buf.getvalue())))
        matched.append(reading.tag_bits_matched)
        assert reading.found
    assert min(matched) >= min_bits, matched


def flat_with_square(background, square=(40, 160, 90)) -> Image.Image:
    """A 32 px image like the shapes model draws: a flat background and one flat shape, enlarged."""
    a = np.empty((32, 32, 3), dtype=np.uint8)
    a[:] = background
    a[8:20, 10:24] = square
    return upscale_for_mark(Image.fromarray(a), 256)


@pytest.mark.parametrize("background", [(255, 255, 255), (0, 0, 0), (255, 0, 0), (0, 0, 255), (255, 255, 0)])
def test_watermark_holds_on_saturated_backgrounds(background):
    # On pure white, black or fully saturated colours the pixel changes that move a block's value
    # in one direction are clipped at 0 or 255: every block must still read its own bit, as the
    # library's decoder reads it (the library's own embedder reads 16 of 32 tag bits on white).
    img = flat_with_square(background)
    marked = embed_watermark(img, "run-a")
    buf = io.BytesIO()
    marked.save(buf, "PNG")
    back = Image.open(io.BytesIO(buf.getvalue()))
    bgr = np.ascontiguousarray(np.asarray(back.convert("RGB"))[:, :, ::-1])
    want = np.resize(np.asarray(payload_bits("run-a")), 32 * 32)  # 1,024 blocks of 8x8 px, bit i mod 48
    assert np.array_equal(block_bits(bgr), want)
    reading = read_watermark(back)
    assert reading.found and reading.tag_bits_matched == 32
    assert reading.run_hash == int("".join(map(str, payload_bits("run-a")[32:])), 2)
    # the change stays small: every pixel within 24 levels (the library: up to 69 on these), PSNR > 33 dB
    diff = np.asarray(marked, dtype=float) - np.asarray(img, dtype=float)
    assert np.abs(diff).max() <= 24 and 10 * np.log10(255**2 / np.mean(diff**2)) > 33


def test_block_bits_read_as_the_library_decodes():
    from imwatermark.dwtDctSvd import EmbedDwtDctSvd

    img = Image.fromarray(np.random.default_rng(3).integers(0, 255, (8, 8, 3), dtype=np.uint8)).resize((256, 264))
    bgr = np.ascontiguousarray(np.asarray(img)[:, :, ::-1])
    per_block = block_bits(bgr)
    assert len(per_block) == 32 * 33
    votes = np.array([per_block[i::48].mean() for i in range(48)])
    library = EmbedDwtDctSvd(watermarks=[0] * 48, wmLen=48, scales=[0, 36, 0], block=4).decode(bgr)
    assert np.array_equal(votes * 255 > 127, library)


def test_marking_leaves_images_without_blocks_unchanged():
    img = Image.new("RGB", (6, 6), (200, 10, 10))
    assert np.array_equal(np.asarray(embed_watermark(img, "run-a")), np.asarray(img))


def test_unmarked_images_are_not_found():
    for seed in range(6):
        img = Image.fromarray(np.random.default_rng(100 + seed).integers(0, 255, (256, 256, 3), dtype=np.uint8))
        assert not read_watermark(img).found


def test_the_command_line_default_guidance_is_the_measured_one():
    import inspect

    from pixelforge.generate.commands import generate_command
    from pixelforge.generate.run import GenerateConfig
    from pixelforge.models.diffusion import GUIDANCE

    cli_default = inspect.signature(generate_command).parameters["guidance"].default
    assert cli_default == GenerateConfig().guidance == GUIDANCE == 2.0
