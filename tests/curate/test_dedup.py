"""Tests for curate/dedup.py: multi-index Hamming search against brute force, exact pairs, groups, votes."""

import numpy as np
import pytest

from pixelforge.curate.dedup import (
    exact_pairs,
    hamming,
    hashes_to_groups,
    near_pairs,
    pairs_to_groups,
    plan_chunks,
)


def _brute(h, r):
    i, j = np.triu_indices(len(h), 1)
    keep = hamming(h[i], h[j]) <= r
    return np.stack([i[keep], j[keep]], axis=1)


def _clustered(n, seed):
    # random hashes plus copies 0..6 bits away, so every radius has pairs to find
    rng = np.random.default_rng(seed)
    h = rng.integers(0, 2**64, n, dtype=np.uint64)
    for k in range(0, n // 2, 2):
        flips = rng.choice(64, rng.integers(0, 7), replace=False)
        h[k + 1] = h[k] ^ np.uint64(sum(1 << int(b) for b in flips))
    return h


@pytest.mark.parametrize("radius", [0, 1, 3, 5, 8, 12])
def test_near_pairs_equal_brute_force(radius):
    h = _clustered(600, radius)
    np.testing.assert_array_equal(near_pairs(h, radius), _brute(h, radius))


@pytest.mark.parametrize("chunks", [3, 4, 9])
def test_any_chunk_count_is_exact(chunks):
    h = _clustered(300, 7)
    np.testing.assert_array_equal(near_pairs(h, 8, chunks=chunks, threads=1), _brute(h, 8))


def test_threads_do_not_change_the_result():
    h = _clustered(500, 3)
    np.testing.assert_array_equal(near_pairs(h, 6, threads=1), near_pairs(h, 6, threads=2))


def test_plan_chunks_for_a_million_at_radius_8_is_three():
    assert plan_chunks(1_000_000, 8) == 3
    assert plan_chunks(1_000_000, 4) == 3
    assert plan_chunks(100, 0) == 1


def test_near_pairs_edge_cases():
    assert near_pairs(np.zeros(1, np.uint64), 4).shape == (0, 2)
    same = np.array([5, 5, 5], np.uint64)
    assert near_pairs(same, 0).tolist() == [[0, 1], [0, 2], [1, 2]]
    with pytest.raises(ValueError):
        near_pairs(same, 17)


def test_exact_pairs_and_groups():
    pairs = exact_pairs(["a", "b", "a", None, None, "b", "a"])
    assert pairs.tolist() == [[0, 2], [1, 5], [0, 6]]
    groups = pairs_to_groups(7, pairs)
    assert groups[0] == groups[2] == groups[6] and groups[1] == groups[5]
    assert len({groups[0], groups[1], groups[3], groups[4]}) == 4


def test_hashes_to_groups_votes():
    base = np.uint64(0x0F0F_F0F0_1234_5678)
    d = np.uint64(0xAAAA_5555_0000_FFFF)
    ones = lambda k: np.uint64((1 << k) - 1)  # noqa: E731 - k low bits set
    phash = np.array([base, base ^ ones(8), base ^ ones(12), base ^ (ones(20) << np.uint64(30)), base], np.uint64)
    dhash = np.array([d, d ^ ones(14), d ^ ones(6), d ^ (ones(6) << np.uint64(40)), ~d], np.uint64)
    # 1: phash 8 nominates, 8 + 14 = 22 confirms; 2: dhash 6 nominates, 12 + 6 confirms;
    # 3: dhash nominates but 20 + 6 > 22; 4: phash 0 nominates but dhash 64 bits away
    dups = hashes_to_groups([None] * 5, phash, dhash, radius=8, combined=22)
    assert dups.groups[0] == dups.groups[1] == dups.groups[2]
    assert len({dups.groups[0], dups.groups[3], dups.groups[4]}) == 3
    assert dups.candidates == 6 and len(dups.near) == 3  # (0,1) (0,2) (1,2)
    phash_only = hashes_to_groups([None] * 5, phash, None, radius=8, combined=None)
    g = phash_only.groups  # 1 and 4 within 8 of 0; 2 within 4 of 1; 3 far from all
    assert g[0] == g[1] == g[2] == g[4] != g[3]
