"""Tests for pixelforge.media: limits, orientation, mode conversion, resize, encode, phash, process."""

from __future__ import annotations

import hashlib
import io
import struct
import warnings
import zlib

import imagehash
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFile, ImageFilter

from pixelforge import media
from pixelforge.errors import ItemError, UsageError
from pixelforge.media import (
    DecodeError,
    MediaLimits,
    NotImage,
    TooLarge,
    TooManyPixels,
    TooSmall,
)
from pixelforge.store.schema import FAILURE_REASONS

# ---------------------------------------------------------------- fixtures


def save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def photo(w: int = 320, h: int = 240, seed: int = 0) -> Image.Image:
    """A photo-like RGB image: smooth colour field, random discs, fine noise, slight blur."""
    rng = np.random.default_rng(seed)
    low = rng.integers(0, 256, (h // 40 + 2, w // 40 + 2, 3), dtype=np.uint8)
    img = Image.fromarray(low).resize((w, h), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(img)
    for _ in range(12):
        x, y, r = int(rng.integers(0, w)), int(rng.integers(0, h)), int(rng.integers(w // 16, w // 4))
        draw.ellipse((x, y, x + r, y + r), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    a = np.asarray(img).astype(np.int16) + rng.integers(-10, 11, (h, w, 3))
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.7))


def solid(color, size=(64, 48), mode="RGB") -> Image.Image:
    return Image.new(mode, size, color)


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def huge_png_header(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR declares width x height; its IDAT could never fill that."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def jpeg_with_orientation(img: Image.Image, orientation: int, quality: int = 95) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return save(img, "JPEG", quality=quality, exif=exif.tobytes())


def pixel(img: Image.Image, xy) -> tuple[int, ...]:
    return tuple(img.getpixel(xy))


def close(a, b, tol: int) -> bool:
    return all(abs(int(x) - int(y)) <= tol for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def big_jpeg() -> bytes:
    return save(photo(1600, 1200), "JPEG", quality=90)


# ---------------------------------------------------------------- errors and argument checks


def test_error_classes_have_documented_reasons():
    for cls in (media.MediaError, DecodeError, NotImage, TooLarge, TooManyPixels, TooSmall):
        assert issubclass(cls, ItemError)
        assert cls.reason in FAILURE_REASONS
    assert issubclass(DecodeError, media.MediaError)
    assert (NotImage.reason, TooLarge.reason, TooManyPixels.reason, TooSmall.reason) == (
        "not_image",
        "too_large",
        "too_many_pixels",
        "too_small",
    )


def test_check_resize_mode():
    assert [media.check_resize_mode(m) for m in media.RESIZE_MODES] == list(media.RESIZE_MODES)
    with pytest.raises(UsageError) as e:
        media.check_resize_mode("fit")
    assert str(e.value) == "--resize-mode 'fit': choose one of center_crop, keep_ratio, pad, none"


def test_check_encoding():
    assert media.check_encoding("jpeg") == "jpg"
    assert [media.check_encoding(e) for e in ("jpg", "png", "webp")] == ["jpg", "png", "webp"]
    with pytest.raises(UsageError) as e:
        media.check_encoding("gif")
    assert str(e.value) == "--encoding 'gif': choose one of jpg, png, webp"


def test_process_checks_arguments_before_work():
    with pytest.raises(UsageError, match="--resize-mode 'fit'"):
        media.process(b"not even an image", size=64, resize_mode="fit")
    with pytest.raises(UsageError, match="--encoding 'bmp'"):
        media.process(b"not even an image", encoding="bmp")
    with pytest.raises(UsageError, match="--quality 0"):
        media.process(b"not even an image", quality=0)
    with pytest.raises(UsageError, match="--size 0"):
        media.process(b"not even an image", size=0, resize_mode="pad")


# ---------------------------------------------------------------- probe and limits


def test_probe_reads_header():
    info = media.probe(save(solid((1, 2, 3), (64, 48)), "PNG"))
    assert info == media.ImageInfo(format="png", width=64, height=48, orientation=1)
    assert media.probe(save(solid((1, 2, 3)), "JPEG")).format == "jpeg"
    assert media.probe(save(solid((1, 2, 3)), "WEBP")).format == "webp"
    assert media.probe(save(solid((1, 2, 3)), "GIF")).format == "gif"
    assert media.probe(save(solid((1, 2, 3)), "BMP")).format == "bmp"
    assert media.probe(save(solid((1, 2, 3)), "TIFF")).format == "tiff"


def test_random_bytes_and_html_are_not_images():
    for data in (np.random.default_rng(0).bytes(4096), b"<!DOCTYPE html><html>nope</html>", b""):
        with pytest.raises(NotImage) as e:
            media.probe(data)
        assert e.value.reason == "not_image"
        with pytest.raises(NotImage):
            media.decode(data)


def test_broken_header_of_known_format_is_decode_error():
    with pytest.raises(DecodeError) as e:
        media.probe(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    assert e.value.reason == "decode_error"


def test_too_large():
    data = save(photo(64, 64), "PNG")
    with pytest.raises(TooLarge) as e:
        media.probe(data, MediaLimits(max_bytes=len(data) - 1))
    assert e.value.reason == "too_large"
    assert str(len(data)) in e.value.detail
    assert media.probe(data, MediaLimits(max_bytes=len(data))).width == 64


def test_too_many_pixels_from_header_before_decoding():
    data = huge_png_header(20000, 20000)  # 400 Mpx: over our limit and PIL's own 179 Mpx bomb limit
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning may escape
        with pytest.raises(TooManyPixels) as e:
            media.decode(data)  # a decode attempt would be a DecodeError, not this
    assert e.value.reason == "too_many_pixels"
    assert "20000x20000" in e.value.detail


def test_pixel_limit_is_ours_not_pils():
    # 144 Mpx: PIL's default check would warn; with the caller's higher limit it is fine
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        info = media.probe(huge_png_header(12000, 12000), MediaLimits(max_pixels=200_000_000))
    assert (info.width, info.height) == (12000, 12000)


def test_low_pixel_limit_on_real_image():
    data = save(solid((0, 0, 0), (100, 100)), "PNG")
    with pytest.raises(TooManyPixels):
        media.process(data, limits=MediaLimits(max_pixels=9999))
    assert media.probe(data, MediaLimits(max_pixels=10000)).width == 100


def test_too_small_uses_shorter_displayed_side():
    data = save(solid((0, 0, 0), (40, 10)), "PNG")
    with pytest.raises(TooSmall) as e:
        media.decode(data, MediaLimits(min_side=16))
    assert e.value.reason == "too_small"
    assert media.probe(data, MediaLimits(min_side=10)).height == 10


def test_truncated_images_are_decode_errors():
    jpg = save(photo(), "JPEG")
    png = save(photo(), "PNG")
    for data in (jpg[: len(jpg) // 2], png[: len(png) // 2]):
        media.probe(data)  # the header is intact
        with pytest.raises(DecodeError) as e:
            media.decode(data)
        assert e.value.reason == "decode_error"
    with pytest.raises(DecodeError):
        media.process(jpg[: len(jpg) // 2])  # also when the original bytes would be kept
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # not switched on globally to get here


# ---------------------------------------------------------------- orientation, frames, modes


def oriented_fixture() -> Image.Image:
    """80x40 stored image: red top-left 40x20 quadrant, rest blue."""
    img = solid((0, 0, 255), (80, 40))
    img.paste((255, 0, 0), (0, 0, 40, 20))
    return img


def test_exif_orientation_6_swaps_and_rotates():
    data = jpeg_with_orientation(oriented_fixture(), 6)
    assert media.probe(data) == media.ImageInfo("jpeg", 40, 80, 6)
    img = media.decode(data)
    assert img.size == (40, 80)
    # orientation 6 = rotate 90 degrees clockwise for display: stored top-left -> top-right
    assert close(pixel(img, (35, 5)), (255, 0, 0), 8)
    assert close(pixel(img, (5, 5)), (0, 0, 255), 8)
    assert close(pixel(img, (35, 75)), (0, 0, 255), 8)


@pytest.mark.parametrize(
    "orientation, size, red_at",
    [
        (1, (80, 40), (5, 5)),
        (2, (80, 40), (75, 5)),
        (3, (80, 40), (75, 35)),
        (4, (80, 40), (5, 35)),
        (5, (40, 80), (5, 5)),
        (7, (40, 80), (35, 75)),
        (8, (40, 80), (5, 75)),
    ],
)
def test_every_exif_orientation(orientation, size, red_at):
    img = media.decode(jpeg_with_orientation(oriented_fixture(), orientation))
    assert img.size == size
    assert close(pixel(img, red_at), (255, 0, 0), 8)


def test_animated_gif_gives_first_frame():
    frames = [solid(c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    data = save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    assert Image.open(io.BytesIO(data)).n_frames == 3
    img = media.decode(data)
    assert img.mode == "RGB"
    assert pixel(img, (10, 10)) == (255, 0, 0)


def test_rgba_half_transparent_red_on_white():
    img = media.decode(save(solid((255, 0, 0, 128), mode="RGBA"), "PNG"))
    assert img.mode == "RGB"
    assert close(pixel(img, (3, 3)), (255, 128, 128), 1)


def test_la_composited_on_white():
    img = media.decode(save(solid((0, 128), mode="LA"), "PNG"))
    assert close(pixel(img, (3, 3)), (128, 128, 128), 1)


def test_palette_transparency_index_is_white():
    p = Image.new("P", (16, 16), 0)
    p.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    p.paste(1, (8, 0, 16, 16))
    img = media.decode(save(p, "PNG", transparency=0))
    assert pixel(img, (2, 2)) == (255, 255, 255)
    assert pixel(img, (12, 2)) == (200, 100, 50)
    gif = media.decode(save(p, "GIF", transparency=0))
    assert pixel(gif, (2, 2)) == (255, 255, 255)


def test_palette_without_transparency():
    p = Image.new("P", (8, 8), 1)
    p.putpalette([0, 0, 0, 12, 34, 56] + [0] * 762)
    assert pixel(media.decode(save(p, "PNG")), (0, 0)) == (12, 34, 56)


def test_grey_and_bilevel():
    assert pixel(media.decode(save(solid(77, mode="L"), "PNG")), (0, 0)) == (77, 77, 77)
    bw = Image.new("1", (8, 8), 0)
    bw.paste(1, (4, 0, 8, 8))
    img = media.decode(save(bw, "PNG"))
    assert (pixel(img, (0, 0)), pixel(img, (7, 0))) == ((0, 0, 0), (255, 255, 255))


def test_16_bit_grey_is_scaled_not_clipped():
    a = np.array([[65535, 32768, 0, 257]], dtype=np.uint16)
    src = Image.fromarray(a)
    assert src.mode == "I;16"
    img = media.decode(save(src, "PNG"))
    assert img.mode == "RGB"
    assert [pixel(img, (x, 0))[0] for x in range(4)] == [255, 128, 0, 1]
    big_endian = media.decode(save(Image.frombytes("I;16B", (4, 1), a.astype(">u2").tobytes()), "TIFF"))
    assert [pixel(big_endian, (x, 0))[0] for x in range(4)] == [255, 128, 0, 1]


def test_32_bit_int_and_float():
    i32 = Image.fromarray(np.array([[65535, 0, 32768]], dtype=np.int32))
    assert i32.mode == "I"
    assert [pixel(media.decode(save(i32, "TIFF")), (x, 0))[0] for x in range(3)] == [255, 0, 128]
    f = Image.fromarray(np.array([[1.0, 0.0, 0.25]], dtype=np.float32))
    assert f.mode == "F"
    assert [pixel(media.decode(save(f, "TIFF")), (x, 0))[0] for x in range(3)] == [255, 0, 64]
    wide = Image.fromarray(np.array([[-100.0, 300.0, 140.0]], dtype=np.float32))  # stretched
    assert [pixel(media.decode(save(wide, "TIFF")), (x, 0))[0] for x in range(3)] == [0, 255, 153]


def test_cmyk_cyan():
    cyan = solid((255, 0, 0, 0), mode="CMYK")
    assert pixel(media.decode(save(cyan, "TIFF")), (0, 0)) == (0, 255, 255)
    assert close(pixel(media.decode(save(cyan, "JPEG", quality=95)), (8, 8)), (0, 255, 255), 4)


@pytest.mark.parametrize("mode, color", [("YCbCr", (76, 85, 255)), ("PA", None), ("RGBa", None)])
def test_other_modes_become_rgb(mode, color):
    if mode == "YCbCr":  # pure red in YCbCr
        img = media._to_rgb(solid(color, mode="YCbCr"))
        assert close(pixel(img, (0, 0)), (255, 0, 0), 2)
    else:  # fully transparent -> white
        img = media._to_rgb(solid((255, 0, 0, 0), mode="RGBA").convert(mode))
        assert pixel(img, (0, 0)) == (255, 255, 255)
    assert img.mode == "RGB"


# ---------------------------------------------------------------- draft decoding


def test_draft_decodes_jpeg_reduced(big_jpeg):
    full = media.decode(big_jpeg)
    assert full.size == (1600, 1200)
    small = media.decode(big_jpeg, draft_size=(256, 256))
    assert 256 <= min(small.size) < 1200
    assert small.size == (400, 300)  # 1/4 is the largest scale keeping both sides >= 256
    assert media.decode(big_jpeg, draft_size=(1000, 1000)).size == (1600, 1200)


def test_draft_size_is_in_displayed_orientation():
    data = jpeg_with_orientation(photo(1600, 1200), 6, quality=80)
    # displayed 1200x1600; (700, 200) needs the full 1200 width, (200, 700) allows 1/2 scale
    assert media.decode(data, draft_size=(700, 200)).size == (1200, 1600)
    assert media.decode(data, draft_size=(200, 700)).size == (600, 800)


def test_draft_ignored_for_png():
    data = save(photo(640, 480), "PNG")
    assert media.decode(data, draft_size=(64, 64)).size == (640, 480)


# ---------------------------------------------------------------- resize


@pytest.mark.parametrize(
    "src, mode, expected",
    [
        ((640, 480), "center_crop", (256, 256)),
        ((640, 480), "keep_ratio", (256, 192)),
        ((640, 480), "pad", (256, 256)),
        ((640, 480), "none", (640, 480)),
        ((480, 640), "center_crop", (256, 256)),
        ((480, 640), "keep_ratio", (192, 256)),
        ((480, 640), "pad", (256, 256)),
        ((480, 640), "none", (480, 640)),
        ((100, 50), "keep_ratio", (256, 128)),
        ((100, 50), "center_crop", (256, 256)),
    ],
)
def test_resize_output_sizes(src, mode, expected):
    assert media.resize(solid((200, 100, 50), src), 256, mode).size == expected


def test_resize_rectangular_target():
    img = solid((1, 2, 3), (640, 480))
    assert media.resize(img, (300, 100), "center_crop").size == (300, 100)
    assert media.resize(img, (300, 100), "keep_ratio").size == (133, 100)
    assert media.resize(img, (300, 100), "pad").size == (300, 100)


def test_pad_letterboxes_on_black():
    land = media.resize(solid((200, 100, 50), (640, 480)), 256, "pad")
    assert pixel(land, (128, 5)) == (0, 0, 0) and pixel(land, (128, 250)) == (0, 0, 0)
    assert close(pixel(land, (128, 128)), (200, 100, 50), 1)
    assert close(pixel(land, (128, 33)), (200, 100, 50), 1)  # bars are 32 px: (256 - 192) / 2
    port = media.resize(solid((200, 100, 50), (480, 640)), 256, "pad")
    assert pixel(port, (5, 128)) == (0, 0, 0) and pixel(port, (250, 128)) == (0, 0, 0)
    assert close(pixel(port, (128, 128)), (200, 100, 50), 1)


def test_center_crop_keeps_the_centre():
    img = solid((0, 0, 255), (640, 480))
    img.paste((255, 0, 0), (0, 0, 80, 480))  # left strip: cropped away (crop keeps x 80..560)
    img.paste((255, 0, 0), (560, 0, 640, 480))
    out = media.resize(img, 256, "center_crop")
    assert close(pixel(out, (2, 128)), (0, 0, 255), 2) and close(pixel(out, (253, 128)), (0, 0, 255), 2)


def test_resize_same_size_is_identity_and_validates():
    img = solid((1, 2, 3), (256, 256))
    assert media.resize(img, 256, "center_crop") is img
    assert media.resize(img, 256, "none") is img
    with pytest.raises(UsageError):
        media.resize(img, 256, "fit")
    with pytest.raises(UsageError):
        media.resize(img, -1, "pad")


# ---------------------------------------------------------------- encode and phash


@pytest.mark.parametrize("ext, fmt, mean_tol", [("jpg", "jpeg", 5.0), ("png", "png", 0.0), ("webp", "webp", 5.0)])
def test_encode_round_trip(ext, fmt, mean_tol):
    src = photo(96, 64)
    data = media.encode(src, ext, quality=95)
    assert media.probe(data) == media.ImageInfo(fmt, 96, 64, 1)
    back = np.asarray(media.decode(data), dtype=np.int16)
    diff = np.abs(back - np.asarray(src, dtype=np.int16))
    assert diff.mean() <= mean_tol  # photo() is noisy: q95 leaves a mean error of about 4


def test_encode_converts_modes_it_cannot_store():
    rgba = solid((255, 0, 0, 0), mode="RGBA")
    assert pixel(media.decode(media.encode(rgba, "jpg")), (5, 5)) == (255, 255, 255)
    assert pixel(media.decode(media.encode(rgba, "png")), (5, 5)) == (255, 255, 255)
    assert Image.open(io.BytesIO(media.encode(solid(9, mode="L"), "png"))).mode == "L"


def test_phash64_matches_imagehash_bit_order():
    for seed in range(3):
        img = photo(seed=seed)
        h = media.phash64(img)
        assert 0 <= h < 2**64
        assert h == int(str(imagehash.phash(img, hash_size=8)), 16)
        bits = imagehash.phash(img).hash.reshape(-1)
        assert (h >> 63) & 1 == int(bits[0]) and h & 1 == int(bits[-1])


def test_phash_near_and_far():
    a, b = photo(seed=1), photo(seed=2)
    recompressed = media.decode(save(a, "JPEG", quality=70))
    assert bin(media.phash64(a) ^ media.phash64(recompressed)).count("1") <= 4
    assert bin(media.phash64(a) ^ media.phash64(b)).count("1") > 10


# ---------------------------------------------------------------- process and array_to_png


@pytest.mark.parametrize("fmt, ext", [("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp")])
def test_process_keeps_original_bytes(fmt, ext):
    data = save(photo(120, 90), fmt)
    p = media.process(data)
    assert p.data is data
    assert (p.ext, p.format) == (ext, fmt.lower())
    assert (p.width, p.height, p.orig_width, p.orig_height) == (120, 90, 120, 90)
    assert p.sha256 == hashlib.sha256(data).hexdigest()
    assert p.phash == media.phash64(media.decode(data))


def test_process_hashes_a_kept_jpeg_from_a_reduced_decode():
    data = save(photo(512, 384), "JPEG")
    p = media.process(data)
    assert p.data is data and (p.width, p.height) == (512, 384)
    small = media.decode(data, draft_size=media.PHASH_DRAFT)
    assert small.size == (128, 96)  # 1/4 scale: the smallest with both sides >= 64
    assert p.phash == media.phash64(small)
    assert bin(p.phash ^ media.phash64(media.decode(data))).count("1") <= 2


def test_process_keeps_original_when_resize_is_a_no_op():
    data = save(photo(256, 256), "JPEG")
    assert media.process(data, size=256, resize_mode="center_crop").data is data


def test_mpo_is_jpeg_and_kept():
    buf = io.BytesIO()
    solid((255, 0, 0)).save(buf, "MPO", save_all=True, append_images=[solid((0, 0, 255))])
    data = buf.getvalue()
    assert media.probe(data) == media.ImageInfo("jpeg", 64, 48, 1)
    p = media.process(data)
    assert p.data is data and (p.ext, p.format) == ("jpg", "jpeg")
    assert close(pixel(media.decode(data), (3, 3)), (255, 0, 0), 3)  # the first picture


def test_process_reencodes_other_formats_as_png():
    data = save(photo(120, 90), "GIF")
    p = media.process(data)
    assert (p.ext, p.format, p.width, p.height) == ("png", "png", 120, 90)
    assert media.probe(p.data).format == "png"
    assert p.sha256 == hashlib.sha256(data).hexdigest()


def test_process_applies_orientation():
    data = jpeg_with_orientation(oriented_fixture(), 6)
    p = media.process(data)
    assert p.data != data and (p.ext, p.format) == ("jpg", "jpeg")
    assert (p.width, p.height, p.orig_width, p.orig_height) == (40, 80, 40, 80)
    assert media.probe(p.data) == media.ImageInfo("jpeg", 40, 80, 1)


def test_process_resize_with_draft_matches_full_decode(big_jpeg):
    p = media.process(big_jpeg, size=256, resize_mode="center_crop", encoding="jpg", quality=95)
    assert (p.ext, p.format, p.width, p.height, p.orig_width, p.orig_height) == ("jpg", "jpeg", 256, 256, 1600, 1200)
    assert media.probe(p.data) == media.ImageInfo("jpeg", 256, 256, 1)
    assert p.sha256 == hashlib.sha256(big_jpeg).hexdigest()
    reference = media.resize(media.decode(big_jpeg), 256, "center_crop")  # no draft
    drafted = media.resize(media.decode(big_jpeg, draft_size=(256, 256)), 256, "center_crop")

    def mean_diff(a, b):
        return np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).mean()

    assert mean_diff(drafted, reference) < 1.0
    assert mean_diff(media.decode(p.data), media.decode(media.encode(reference, "jpg", 95))) < 2.0
    assert bin(p.phash ^ media.phash64(reference)).count("1") <= 4


def test_process_encoding_and_modes():
    data = save(photo(640, 480), "PNG")
    p = media.process(data, size=128, resize_mode="keep_ratio", encoding="webp", quality=80)
    assert (p.ext, p.format, p.width, p.height) == ("webp", "webp", 128, 96)
    assert media.probe(p.data).format == "webp"
    p = media.process(data, size=128, resize_mode="pad")
    assert (p.ext, p.format, p.width, p.height) == ("png", "png", 128, 128)
    p = media.process(data, encoding="jpeg")
    assert (p.ext, p.format, p.width, p.height) == ("jpg", "jpeg", 640, 480)


def test_process_raises_item_errors():
    with pytest.raises(NotImage):
        media.process(b"hello")
    with pytest.raises(TooSmall):
        media.process(save(photo(32, 32), "PNG"), limits=MediaLimits(min_side=64))


@pytest.mark.parametrize("shape, mode", [((5, 7), "L"), ((5, 7, 3), "RGB"), ((5, 7, 4), "RGBA")])
def test_array_to_png_is_lossless(shape, mode):
    arr = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    back = Image.open(io.BytesIO(media.array_to_png(arr)))
    assert back.format == "PNG" and back.mode == mode
    assert np.array_equal(np.asarray(back), arr)


def test_array_to_png_rejects_bad_arrays():
    with pytest.raises(ValueError, match="uint8"):
        media.array_to_png(np.zeros((4, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="shape"):
        media.array_to_png(np.zeros((4, 4, 2), dtype=np.uint8))


def test_open_rgb_is_decode():
    data = save(solid((10, 20, 30, 255), mode="RGBA"), "PNG")
    img = media.open_rgb(data)
    assert img.mode == "RGB" and pixel(img, (0, 0)) == (10, 20, 30)


# ---------------------------------------------------------------- Pillow's per-image warnings are counted, not printed


def palette_png_with_bytes_transparency() -> bytes:
    """A palette PNG whose tRNS chunk gives per-entry alpha (Pillow keeps it as bytes)."""
    img = Image.new("P", (16, 16))
    img.putpalette([v for i in range(256) for v in (i, 255 - i, i // 2)])
    img.paste(7, (0, 0, 8, 16))
    return save(img, "PNG", transparency=bytes([0, 64, 128, 255, 255, 255, 255, 32]))


def jpeg_with_corrupt_exif() -> bytes:
    """A JPEG whose EXIF IFD says it has 5 entries but holds one and a half."""
    tiff = b"II*\x00\x08\x00\x00\x00" + b"\x05\x00" + b"\x12\x01\x03\x00\x01\x00\x00\x00\x01\x00" + b"\xff" * 6
    app1 = b"Exif\x00\x00" + tiff
    data = save(photo(32, 24), "JPEG")
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + data[2:]


def invalid_apng() -> bytes:
    """A PNG with an acTL chunk declaring zero frames: Pillow warns "Invalid APNG" and reads the PNG."""
    data = save(solid((10, 200, 30), (8, 8)), "PNG")
    end_of_ihdr = 8 + 8 + 13 + 4
    return data[:end_of_ihdr] + png_chunk(b"acTL", struct.pack(">II", 0, 0)) + data[end_of_ihdr:]


def test_pillow_warnings_are_counted_by_reason_and_never_escape(recwarn):
    media.take_warnings()  # counts of earlier tests in this process
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning that escapes media fails the test
        assert media.decode(palette_png_with_bytes_transparency()).size == (16, 16)
        assert media.decode(jpeg_with_corrupt_exif()).size == (32, 24)
        assert media.decode(jpeg_with_corrupt_exif(), draft_size=(8, 8)).mode == "RGB"
        assert media.probe(invalid_apng()).format == "png"
        # converting an opened palette image to RGB is where Pillow warns about its transparency
        assert media.thumbnail_png(palette_png_with_bytes_transparency(), 32).startswith(b"\x89PNG")
    assert recwarn.list == []
    assert media.take_warnings() == {"corrupt_exif": 2, "invalid_apng": 1, "palette_transparency": 1}
    assert media.take_warnings() == {}  # taking resets


def test_counting_warnings_passes_other_libraries_warnings_through():
    media.take_warnings()
    with pytest.warns(DeprecationWarning, match="not pillow"), media.counting_warnings():
        warnings.warn("not pillow", DeprecationWarning, stacklevel=1)
    assert media.take_warnings() == {}


def test_add_warnings_sums_workers_counts():
    total = {"corrupt_exif": 1}
    assert media.add_warnings(total, {"corrupt_exif": 2, "other": 1}) == {"corrupt_exif": 3, "other": 1}


# ---------------------------------------------------------------- masks, PNG, thumbnails, grids, folder listing


def test_masks_roundtrip_8_and_16_bit():
    small = np.array([[0, 1], [2, 255]], np.uint16)
    data = media.encode_mask(small)
    assert Image.open(io.BytesIO(data)).mode == "L"
    back = media.decode_mask(data)
    assert back.dtype == np.uint8 and np.array_equal(back, small)
    wide = np.array([[0, 300], [65535, 7]], np.uint16)
    back = media.decode_mask(media.encode_mask(wide))
    assert back.dtype == np.uint16 and np.array_equal(back, wide)
    with pytest.raises(ItemError) as e:
        media.encode_mask(np.zeros((2, 2, 3), np.uint8))
    assert e.value.reason == "bad_annotation"


def test_resize_mask_is_nearest_neighbour_over_the_box():
    mask = np.zeros((4, 8), np.uint8)
    mask[:, 4:] = 9
    out = media.resize_mask(mask, (2, 2), (2.0, 0.0, 6.0, 4.0))
    assert out.tolist() == [[0, 9], [0, 9]]


def test_encode_png_of_arrays_and_images_with_text_chunks():
    from PIL import PngImagePlugin

    arr = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    assert np.array_equal(np.asarray(media.decode(media.encode_png(arr))), arr)
    assert media.encode_png(arr) == media.array_to_png(arr)
    info = PngImagePlugin.PngInfo()
    info.add_text("generator", "pixelforge")
    data = media.encode_png(Image.fromarray(arr), compress_level=6, pnginfo=info)
    opened = media.open_image(data)
    assert opened.format == "PNG" and opened.text == {"generator": "pixelforge"}
    with pytest.raises(OSError):
        media.open_image(b"not an image")


def test_thumbnail_png_enlarges_small_images_crisply_and_shrinks_large_ones():
    small = solid((255, 0, 0), (8, 4))
    assert Image.open(io.BytesIO(media.thumbnail_png(small, 32))).size == (32, 16)
    big = photo(200, 100)
    assert Image.open(io.BytesIO(media.thumbnail_png(big, 50))).size == (50, 25)
    assert Image.open(io.BytesIO(media.thumbnail_png(small, 32, smooth=False))).size == (8, 4)
    assert Image.open(io.BytesIO(media.thumbnail_png(save(big, "PNG"), 50, smooth=False))).size == (50, 25)


def test_save_grid_upscales_with_nearest_neighbour(tmp_path):
    grid = np.zeros((2, 3, 3), np.uint8)
    grid[0, 0] = (255, 255, 255)
    media.save_grid(grid, tmp_path / "g.png", scale=4)
    out = np.asarray(Image.open(tmp_path / "g.png"))
    assert out.shape == (8, 12, 3) and (out[:4, :4] == 255).all() and (out[4:, :] == 0).all()


def test_images_under_lists_image_files_sorted_skipping_hidden(tmp_path):
    for name in ("b/2.PNG", "b/1.jpg", "a.webp", ".hidden/x.png", "b/.y.png", "notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert [p.relative_to(tmp_path).as_posix() for p in media.images_under(tmp_path)] == [
        "a.webp",
        "b/1.jpg",
        "b/2.PNG",
    ]
