"""Tests for curate/captions.py: word counts and every caption flag."""

import pytest

from pixelforge.curate.captions import CAPTION_FLAGS, CaptionRules, caption_flags, count_words


@pytest.mark.parametrize(
    "caption, words, flags",
    [
        (None, 0, ["empty"]),
        ("   ", 0, ["empty"]),
        ("a small red circle in the top left on a blue background", 12, []),
        ("IMG_1234.jpg", 2, ["too_short", "filename_like"]),
        ("DSC0001", 1, ["too_short", "filename_like"]),
        ("PXL_20230101_123456", 1, ["too_short", "filename_like"]),
        ("my holiday photo-2.png from the beach", 8, ["filename_like"]),
        ("image", 1, ["too_short", "boilerplate"]),
        ("Click here", 2, ["too_short", "boilerplate"]),
        ("Untitled 3", 2, ["too_short", "boilerplate"]),
        ("a dog on https://example.org/dog", 7, ["contains_url"]),
        ("visit www.shop.com for more", 6, ["contains_url"]),
        ("a cat\x00 on a mat", 5, ["non_printable"]),
        ("a cat \ufffd on a mat", 5, ["non_printable"]),
        ("buy buy buy now please", 5, ["repeated_tokens"]),
        ("cat dog cat cat", 4, ["repeated_tokens"]),
        ("A RED CAR ON A ROAD", 6, ["all_caps"]),
        ("don't stop believing", 3, []),
    ],
)
def test_flags(caption, words, flags):
    assert count_words(caption) == words
    assert caption_flags(caption) == flags


def test_length_rules_are_configurable():
    rules = CaptionRules(min_words=1, max_words=4)
    assert caption_flags("dog", rules) == []
    assert caption_flags("one two three four five", rules) == ["too_long"]
    assert caption_flags("w " * 61) == ["too_long", "repeated_tokens"]


def test_flags_come_from_the_closed_set_in_order():
    flags = caption_flags("IMAGE IMAGE IMAGE WWW.X.COM")
    assert flags == ["contains_url", "repeated_tokens", "all_caps"]
    assert flags == [f for f in CAPTION_FLAGS if f in flags]
