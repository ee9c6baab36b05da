"""GEMM time from tiles, waves and alignment: why a GEMM of a given shape runs below the card's peak.

cuBLAS splits C[M, N] into output tiles; each SM computes one tile at a time, streaming K through it.
A GEMM therefore takes ``waves x tile time``, with ``waves = ceil(tiles / SMs)`` (NVIDIA, "Matrix
Multiplication Background User's Guide", DU-09799-001, sections 2.3 "Typical tile dimensions in cuBLAS" and
3 "Dimension quantization effects": tile and wave quantization).  A tile's time is its multiply-adds at the
SM's share of the achieved rate, plus a fixed pipeline fill and epilogue worth ``K_OVERHEAD`` elements of K
(a few K-steps of a multistage main loop).  The heuristic picks the tile that finishes first; the candidates
are the tile shapes the guide lists for tensor-core kernels (256x128, 128x256, 128x128), all assumed to run at
the same per-SM rate.

Alignment: tensor-core kernels need every leading dimension to be a multiple of 16 bytes (8 elements at
16-bit, 4 at 32-bit); otherwise cuBLAS falls back to alignment-1/2 kernels (cuBLAS documentation,
"Tensor Core usage" restrictions).  Their rate is ``UNALIGNED_FRACTION`` of the dense peak.

The per-SM rate is set so that a 4096^3 GEMM, the probe's reference shape, runs at exactly the card's
large-shape efficiency: a probe of the card therefore calibrates this model at that shape, and smaller or
skinnier GEMMs fall below it by tile and wave quantization alone.

Pure arithmetic: no torch, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

#: Output tile shapes (rows, columns) a cuBLAS heuristic chooses from, with the per-SM rate each reaches relative
#: to the largest: a smaller tile re-uses each loaded operand fewer times, so it runs below the SM's peak but fills
#: more SMs when the output is small (NVIDIA matmul guide, section 2.3: 256x128 is the most efficient, 64x64 the
#: least; the relative rates are this project's assumption, checked only end to end).
TILES: tuple[tuple[int, int, float], ...] = ((256, 128, 1.0), (128, 256, 1.0), (128, 128, 0.95), (128, 64, 0.8),
                                             (64, 128, 0.8), (64, 64, 0.6))
#: Split-K factors tried when the output has too few tiles to fill the SMs: each split computes a slice of K for
#: the same tiles, and one reduction pass adds them (cuBLAS/CUTLASS "split-K" and "stream-K" schedules).
SPLIT_K: tuple[int, ...] = (1, 2, 4, 8)
#: Fixed cost of one tile in elements of K: pipeline fill and epilogue of a multistage main loop (about two
#: 64-deep K-steps).  Checked against the probe's 1024^3 and 2048^3 points (docs/estimates.md).
K_OVERHEAD = 128
#: The shape at which a card's large-shape efficiency is defined (the probe's square GEMM).
REFERENCE = (4096, 4096, 4096)

#: GEMMs off the 16-byte grid as a fraction of the dense tensor peak, by architecture key and by the alignment
#: (elements) that every dimension does have.  hopper/blackwell: cuBLAS falls back to CUTLASS SM75/SM80-class
#: ``align1``/``align2`` kernels without wgmma.  The H200 per-kernel profile measured them on the validate zoo's
#: vocabulary projections (tests/data/gpu-runs/h200-2026-11-28/profile-ops.json): GPT-2's 50257 (odd: align1)
#: at 95-141 TFLOP/s of 989 (~12%), BERT's 30522 (even: align2) at ~240 TFLOP/s (~24%); align4 is taken as
#: twice align2.  Other architectures keep mma.sync as their native path and lose only vectorised loads: ~35%
#: assumed for align1 (nanoGPT's 25% step-time gain from padding GPT-2's vocabulary 50257 -> 50304 on A100
#: implies the head ran ~2x slower; Karpathy, nanoGPT README 2023), doubling per alignment step.
UNALIGNED_FRACTION: dict[str, float] = {"hopper": 0.12, "blackwell": 0.12}
UNALIGNED_DEFAULT = 0.35
UNALIGNED_SOURCE = ("GEMMs with a dimension not a multiple of 16 bytes run on alignment-1/2 kernels: ~12% (align1) "
                    "and ~24% (align2) of the dense peak on Hopper (H200 profile of GPT-2's and BERT's vocabulary "
                    "projections), ~35% for align1 assumed elsewhere (nanoGPT's vocabulary-padding gain on A100), "
                    "doubling per alignment step")


def unaligned_fraction(arch: str, alignment: int = 1) -> float:
    """Fraction of the dense tensor peak a GEMM reaches on ``arch`` when its dimensions are multiples of
    ``alignment`` elements but not of 16 bytes (at most 0.9: it never reaches the aligned kernels)."""
    return min(0.9, UNALIGNED_FRACTION.get(arch, UNALIGNED_DEFAULT) * max(1, alignment))


def common_alignment(gemms: Sequence[tuple[int, int, int]], align_elems: int) -> int:
    """The largest power of two (up to ``align_elems``) dividing every dimension of every GEMM."""
    a = 1
    while a < align_elems and all(d % (2 * a) == 0 for g in gemms for d in g):
        a *= 2
    return a


def aligned(gemms: Sequence[tuple[int, int, int]], align_elems: int) -> bool:
    """Whether every dimension of every GEMM is a multiple of ``align_elems`` (16 bytes of the element)."""
    return all(d % align_elems == 0 for g in gemms for d in g)


def unaligned_gemms(ops: Iterable[Any], align_elems: int) -> list[tuple[str, float, int]]:
    """(name, FLOPs, alignment) of the tensor-core GEMM ops (``OpCost``) whose shapes are off the 16-byte grid."""
    return [(op.name, op.flops, common_alignment(op.gemms, align_elems)) for op in ops
            if op.gemms and op.tensor_core and op.flops and not aligned(op.gemms, align_elems)]


def _tiled_units(m: int, n: int, k: int, sms: int) -> float:
    """Multiply-add "units" one SM spends on the best schedule: waves x tile area x (K slice + overhead) / rate."""
    best = math.inf
    for tm, tn, rate in TILES:
        tiles = math.ceil(m / tm) * math.ceil(n / tn)
        for split in SPLIT_K:
            if split > 1 and (tiles * split > 2 * sms or k // split < 256):
                break
            waves = math.ceil(tiles * split / sms)
            best = min(best, waves * tm * tn * (math.ceil(k / split) + K_OVERHEAD) / rate)
    return best


def quantization_factor(m: int, n: int, k: int, sms: int) -> float:
    """Tiled work / useful work (>= 1 for a GEMM that fills every tile and wave exactly)."""
    return _tiled_units(m, n, k, sms) * sms / (m * n * k) if m and n and k else 1.0


def gemm_seconds(m: int, n: int, k: int, *, rate_flops: float, sms: int) -> float:
    """Seconds of one GEMM at a card's large-shape rate ``rate_flops`` (the rate a 4096^3 GEMM reaches)."""
    if not (m and n and k):
        return 0.0
    ref = quantization_factor(*REFERENCE, sms)
    per_sm = rate_flops * ref / sms  # the SM's own rate, before quantization
    return 2.0 * _tiled_units(m, n, k, sms) / per_sm
