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

#: Output tile shapes (rows, columns) a cuBLAS heuristic chooses from (NVIDIA matmul guide, section 2.3).
TILES: tuple[tuple[int, int], ...] = ((256, 128), (128, 256), (128, 128))
#: Fixed cost of one tile in elements of K: pipeline fill and epilogue of a multistage main loop (about two
#: 64-deep K-steps).  Checked against the probe's 1024^3 and 2048^3 points (docs/estimates.md).
K_OVERHEAD = 128
#: The shape at which a card's large-shape efficiency is defined (the probe's square GEMM).
REFERENCE = (4096, 4096, 4096)

#: Unaligned GEMMs (a dimension not a multiple of 16 bytes) as a fraction of the dense tensor peak, by
#: architecture key.  hopper/blackwell: cuBLAS falls back to SM75-class CUTLASS ``align1`` kernels without
#: wgmma; the H200 per-kernel profile of GPT-2's vocabulary-50257 LM head measured them at 95-141 TFLOP/s of
#: 989 (tests/data/gpu-runs/h200-2026-11-28/profile-ops.json), i.e. ~12%.  Other architectures keep mma.sync
#: as their native path and lose only vectorised loads: ~35% assumed (nanoGPT's 25% step-time gain from padding
#: GPT-2's vocabulary 50257 -> 50304 on A100 implies the head ran ~2x slower; Karpathy, nanoGPT README 2023).
UNALIGNED_FRACTION: dict[str, float] = {"hopper": 0.12, "blackwell": 0.12}
UNALIGNED_DEFAULT = 0.35
UNALIGNED_SOURCE = ("GEMMs with a dimension not a multiple of 16 bytes run on alignment-1 kernels: ~12% of the "
                    "dense peak on Hopper (H200 profile of GPT-2's 50257-vocabulary head), ~35% assumed elsewhere "
                    "(nanoGPT's vocabulary-padding gain on A100)")


def unaligned_fraction(arch: str) -> float:
    """Fraction of the dense tensor peak an unaligned GEMM reaches on architecture ``arch``."""
    return UNALIGNED_FRACTION.get(arch, UNALIGNED_DEFAULT)


def aligned(gemms: Sequence[tuple[int, int, int]], align_elems: int) -> bool:
    """Whether every dimension of every GEMM is a multiple of ``align_elems`` (16 bytes of the element)."""
    return all(d % align_elems == 0 for g in gemms for d in g)


def unaligned_gemms(ops: Iterable[Any], align_elems: int) -> list[tuple[str, float]]:
    """(name, FLOPs) of the tensor-core GEMM ops (``OpCost``) whose shapes are off the 16-byte grid."""
    return [(op.name, op.flops) for op in ops
            if op.gemms and op.tensor_core and op.flops and not aligned(op.gemms, align_elems)]


def _tiled_units(m: int, n: int, k: int, sms: int) -> float:
    """Multiply-add "units" the tiled schedule spends: waves x tile area x (K + overhead)."""
    best = math.inf
    for tm, tn in TILES:
        tiles = math.ceil(m / tm) * math.ceil(n / tn)
        waves = math.ceil(tiles / sms)
        best = min(best, waves * tm * tn * (k + K_OVERHEAD))
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
