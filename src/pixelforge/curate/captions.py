"""Caption checks: word counts and a closed set of flags for captions that would mislead a model."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass

# Closed set of caption flags, with what each means (docs/curate.md lists them).
CAPTION_FLAGS: dict[str, str] = {
    "empty": "no caption, or only whitespace",
    "too_short": "fewer than min_words words",
    "too_long": "more than max_words words",
    "filename_like": "looks like a file name or camera counter (IMG_1234.jpg, DSC0001, photo-2.png)",
    "boilerplate": "says nothing about the image (image, photo, untitled, click here, ...)",
    "contains_url": "contains a URL or a bare domain name",
    "non_printable": "contains control characters or U+FFFD replacement characters",
    "repeated_tokens": "a word repeated three times in a row, or one word making up half of 4+ words",
    "all_caps": "every letter is upper-case (4+ letters)",
}

_WORD = re.compile(r"\w+(?:['’]\w+)*", re.UNICODE)
_IMAGE_EXT = r"(?:jpe?g|png|gif|webp|bmp|tiff?|heic|heif|avif|raw|cr2|nef)"
_FILENAME = [
    re.compile(rf"(?i)\b[\w\-]+\.{_IMAGE_EXT}\b"),  # any token with an image extension
    # camera and phone counters: IMG_1234, DSC0001, DSCN1234, PXL_20230101_123456, GOPR0042, P1010001
    re.compile(r"(?i)^\s*(?:img|dsc[nf]?|pxl|gopr|mvimg|sam|dcim|p|pic|vid|screenshot)[\s_\-]*\d{3,}[\w\-]*\s*$"),
    re.compile(r"(?i)^\s*[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\s*$"),  # uuid
    re.compile(r"^\s*[\d_\-]{6,}\s*$"),  # bare numbers / dates as names
]
# a word list reads best as a paragraph, not one word a line
# fmt: off
_BOILERPLATE_WORDS = {
    "image", "images", "photo", "photos", "picture", "pic", "img", "untitled", "thumbnail", "thumb",
    "placeholder", "logo", "banner", "icon", "default", "alt", "null", "none", "na", "n a", "undefined",
    "click here", "click to enlarge", "read more", "download", "no description", "image not found",
    "no image", "stock photo", "untitled image", "image description", "photo description", "spacer",
    "loading", "advertisement", "featured image", "image of", "photo of", "picture of", "view image",
}
# fmt: on
_BOILERPLATE_NUMBERED = re.compile(r"^(?:image|photo|picture|img|untitled|figure|fig|slide)\s*\d*$")
_URL = re.compile(
    r"(?i)(?:\b(?:https?|ftp)://\S+|\bwww\.\S+|\b[\w\-]+(?:\.[\w\-]+)*\.(?:com|org|net|io|co|uk|de|"
    r"fr|info|biz|ru|cn|jp|gov|edu)(?:/\S*)?\b)"
)


@dataclass(frozen=True)
class CaptionRules:
    """Thresholds of the word-count flags (CLIP's text encoder reads at most 77 tokens)."""

    min_words: int = 3
    max_words: int = 60


def count_words(caption: str | None) -> int:
    """Number of words (Unicode letters/digits runs, apostrophes kept inside words)."""
    return len(_WORD.findall(caption)) if caption else 0


def _non_printable(text: str) -> bool:
    for ch in text:
        if ch in "\n\t ":
            continue
        if ch == "\ufffd" or unicodedata.category(ch) in ("Cc", "Cf", "Co", "Cs"):
            return True
    return False


def _repeated(words: list[str]) -> bool:
    lowered = [w.lower() for w in words]
    if any(lowered[i] == lowered[i + 1] == lowered[i + 2] for i in range(len(lowered) - 2)):
        return True
    if len(lowered) >= 4:
        _, top = Counter(lowered).most_common(1)[0]
        return top * 2 >= len(lowered) + (len(lowered) % 2)  # at least half, rounding up
    return False


def caption_flags(caption: str | None, rules: CaptionRules = CaptionRules()) -> list[str]:
    """The CAPTION_FLAGS that apply to ``caption``, in CAPTION_FLAGS order (empty list: looks fine)."""
    if caption is None or not caption.strip():
        return ["empty"]
    text = caption.strip()
    words = _WORD.findall(text)
    flags: set[str] = set()
    if len(words) < rules.min_words:
        flags.add("too_short")
    if len(words) > rules.max_words:
        flags.add("too_long")
    if any(p.search(text) for p in _FILENAME):
        flags.add("filename_like")
    normal = " ".join(w.lower() for w in words)
    if normal in _BOILERPLATE_WORDS or _BOILERPLATE_NUMBERED.match(normal):
        flags.add("boilerplate")
    if _URL.search(text):
        flags.add("contains_url")
    if _non_printable(text):
        flags.add("non_printable")
    if _repeated(words):
        flags.add("repeated_tokens")
    letters = [ch for ch in text if ch.isalpha()]
    if len(letters) >= 4 and all(ch.isupper() for ch in letters):
        flags.add("all_caps")
    return [f for f in CAPTION_FLAGS if f in flags]
