"""The caching-allocator replay (advisor.estimator.allocator): PyTorch's block rules, and a traced step replayed."""

from __future__ import annotations

import pytest

from advisor.estimator.allocator import CachingAllocator, replay, round_size, segment_size, supports

MiB = 2**20


def test_rounding_and_segment_sizes_are_torchs() -> None:
    assert round_size(1) == 512 and round_size(512) == 512 and round_size(513) == 1024
    assert segment_size(512) == 2 * MiB and segment_size(1 * MiB) == 2 * MiB  # small pool
    assert segment_size(1 * MiB + 512) == 20 * MiB and segment_size(10 * MiB - 512) == 20 * MiB
    assert segment_size(10 * MiB) == 10 * MiB and segment_size(11 * MiB + 1) == 12 * MiB  # own segment, 2 MiB steps


def test_small_requests_share_a_2_mib_segment() -> None:
    a = CachingAllocator()
    blocks = [a.malloc(1000) for _ in range(4)]
    assert a.reserved == 2 * MiB and a.allocated == 4 * 1024
    for b in blocks:
        a.free(b)
    assert a.allocated == 0 and a.reserved == 2 * MiB  # cached, not returned


def test_freed_block_is_split_for_a_smaller_request_and_merges_back() -> None:
    a = CachingAllocator()
    big = a.malloc(64 * MiB)
    a.free(big)
    x = a.malloc(40 * MiB)  # best fit: the cached 64 MiB block, split (24 MiB left > 1 MiB)
    y = a.malloc(24 * MiB)  # the remainder serves it exactly
    assert a.reserved == 64 * MiB and a.allocated == 64 * MiB
    a.free(x)
    a.free(y)  # merges with its free neighbour: one 64 MiB block again
    a.malloc(64 * MiB)
    assert a.reserved == 64 * MiB


def test_fragmentation_reserves_a_new_segment() -> None:
    """Two freed 30 MiB blocks in different segments cannot serve one 50 MiB request: segments never merge."""
    a = CachingAllocator()
    x, y = a.malloc(30 * MiB), a.malloc(30 * MiB)
    a.free(x)
    a.free(y)
    a.malloc(50 * MiB)
    assert a.reserved == 110 * MiB and a.peak_reserved == 110 * MiB and a.peak_allocated == 60 * MiB


def test_a_large_block_is_handed_out_whole_when_the_rest_is_at_most_1_mib() -> None:
    a = CachingAllocator()
    a.free(a.malloc(20 * MiB))
    a.malloc(19 * MiB + 512)  # 512 KiB would remain: not split, the whole block counts as allocated
    assert a.allocated == 20 * MiB


def test_replay_of_a_step_counts_state_temporaries_and_the_gradients_of_the_last_step() -> None:
    params = [[40 * MiB, 1], [40 * MiB, 1]]
    step = [100 * MiB, 40 * MiB, -1, 40 * MiB]  # an activation, a gradient, the activation freed, a gradient
    r = replay({"params": params, "inputs": [MiB], "step": step, "grads": [1, 2]}, "adamw")
    # adamw: two states per parameter (step 1) and one temporary per parameter in every step; the peak is the
    # optimizer step: weights + input + gradients + states + temporaries
    assert r.peak_allocated == (80 + 1 + 80 + 160 + 80) * MiB
    # the gradients split the cached 100 MiB activation block, so the states and temporaries need new segments
    assert r.peak_reserved > r.peak_allocated + 40 * MiB and r.gap == r.peak_reserved - r.peak_allocated
    infer = replay({"params": params, "inputs": [], "step": [8 * MiB, -1], "grads": []}, None)
    assert infer.peak_allocated == 88 * MiB
    assert supports("sgd-momentum") and not supports("adafactor")
    with pytest.raises(ValueError, match="adafactor"):
        replay({"params": params, "inputs": [], "step": [], "grads": []}, "adafactor")
