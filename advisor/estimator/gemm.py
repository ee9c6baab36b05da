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
"Tensor Core usage" restrictions).  Their rate is the card profile's ``unaligned_fraction`` of the dense peak, and
they tile the output no better than the aligned kernels do: an unaligned GEMM takes the slower of its aligned tile
time and its FLOPs at that rate (``unaligned_seconds``), never less than its aligned neighbour.  Only leading
dimensions count:
the rows of a step's activations (tokens = batch x sequence, or sequences; ``activation_rows``) never are one, since
PyTorch's linear layers keep x[tokens, in] and y[tokens, out] row-major (tokens are M of the forward and grad-input
GEMMs and the reduced K of the grad-weight one, whose leading dimensions are the features) and the kernels
predicate the last partial tile of M or K rather than narrow their loads: one more sample never switches a GEMM to
the fallback kernels.  Only cards with tensor cores (``has_tensor_cores``) at a precision whose matmuls use them
(``tensor_core_gemms``) have such kernels; elsewhere a flagged GEMM runs the CUDA-core tiles.

The per-SM rate is set so that a 4096^3 GEMM, the probe's reference shape, runs at exactly the card's
large-shape efficiency: a probe of the card therefore calibrates this model at that shape, and smaller or
skinnier GEMMs fall below it by tile and wave quantization alone.

CUDA-core GEMMs (fp32 with TF32 off, PyTorch's matmul default; 16-bit on cards without tensor cores) run cuBLAS's
SIMT ``sgemm`` kernels instead (``SIMT_TILES``), at the profile's ``matmul_vector`` (x ``fp32_matrix`` where fp32 GEMMs
run on matrix cores, AMD CDNA) of the FP32 peak at the reference shape.  Three things set a smaller GEMM's rate there
(NeuSight's train split, whose rows name each kernel and its grid: ``benchmarks/neusight_fit.py --simt``):

* Shared-memory bandwidth per FP32 lane.  Each thread of a SIMT tile reads its a x b outputs' operands from shared
  memory every K step: a + b floats for a x b multiply-adds.  An SM's shared memory delivers 128 bytes a clock
  (Volta through Hopper), its FP32 lanes 2 FLOP each a clock, so a thread tile's ratio ``x`` of shared-memory-bound
  to lane-bound rate is 64 x FLOP-per-byte / lanes: 2 for an 8x8 thread tile on a 64-lane SM (V100, A100, T4), 1 for
  a 4x4 one, and half that on a 128-lane SM (Hopper, GA10x, Ada).  The rate is ``x / (x + SIMT_LDS_EXPOSED)``: the
  saturated per-SM rates NeuSight's kernels reach on V100 / A100 (8x8: 0.88-0.92 of peak; 4x4 ``*_sgemm_128x32`` /
  ``32x128``: 0.76-0.80).  The same figure puts Hopper's 8x8 tiles at 0.77 of peak: the shared probes' square SGEMM
  (0.76 of the 67 TFLOP/s boost peak, at 1,965-1,980 MHz: SGEMM does not pull an H100 to its power cap).
* Warps in flight.  An SM keeps its FP32 lanes busy only with ``SIMT_SATURATION_WARPS`` warps per 64 lanes resident
  (twice as many warps for twice the lanes, Little's law): one 64x64 tile (2 warps) alone on a V100 SM runs at 0.35 of
  the saturated rate, one 128x64 (4 warps) at 0.78, one 128x128 (8 warps) at 0.73-0.91.
* Split-K only for deep GEMMs.  cuBLAS splits K across CTAs (``gridDim.z``, reduced in the kernel, at the rate of
  unsplit grids) when K is at least ``SPLIT_K_DEPTH`` x sqrt(M N), up to ``SIMT_SPLIT_CTAS_PER_SM``; A100's heuristic
  never splits a GEMM shallower than that (V100 and T4 rarely).

So a small square GEMM on a wide card runs tiles that are either too few for its SMs or too thin for its lanes: an
H100 1024^3 SGEMM (132 SMs) is priced at 0.80 of its 4096^3 rate (measured 0.74; was 0.99).  SIMT kernels have no
alignment requirement and lose nothing off the 16-byte grid (NeuSight's train split: large fp32 ``nn.Linear`` with an
odd N or K run at the median rate of those with N and K multiples of 4 on P100, T4, V100 and A100; the H200 profile's
``cutlass_80_simt_sgemm_*_align1`` kernels run BERT-base's fp32 GEMMs at the probe's square-GEMM rate).

Pure arithmetic: no torch, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from advisor.estimator.index_bound import bytes_seconds
from advisor.estimator.pricing import CONV_CLASSES, MATMUL_VECTOR, TENSOR, VECTOR, register

if TYPE_CHECKING:
    from advisor.catalog import GpuSpec
    from advisor.estimator.ops import PreparedOp
    from advisor.estimator.time import CardRates

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
#: The align-1 figure is each card's profile's (``unaligned_fraction``: 0.12 on Hopper / datacenter Blackwell, 0.35
#: elsewhere).
UNALIGNED_SOURCE = ("GEMMs with a dimension not a multiple of 16 bytes run on alignment-1/2 kernels: ~12% (align1) "
                    "and ~24% (align2) of the dense peak on Hopper (H200 profile of GPT-2's and BERT's vocabulary "
                    "projections), ~35% for align1 assumed elsewhere (nanoGPT's vocabulary-padding gain on A100), "
                    "doubling per alignment step")


#: cuBLAS's CUDA-core SGEMM kernels as (output rows, columns, warps, outputs per thread): the
#: ``{volta,ampere}_sgemm_<rows>x<cols>`` kernels NeuSight's profiles record for fp32 ``nn.Linear`` / ``torch.bmm`` on
#: T4, V100 and A100 (train split: ``Kernel Name`` and block size); 128x128 / 128x64 / 64x64 hold 64 outputs a thread
#: (8x8), 128x32 / 32x128 16 (4x4).  (Their ``*_sliced1x4`` kernels, which split K inside a CTA, are left out: split-K
#: prices those shapes.)
SIMT_TILES: tuple[tuple[int, int, int, int], ...] = ((128, 128, 8, 64), (128, 64, 4, 64), (64, 64, 2, 64),
                                                     (128, 32, 8, 16), (32, 128, 8, 16))
#: Bytes of shared memory an SM delivers per clock (32 banks x 4 bytes: Volta through Hopper).
SMEM_BYTES_PER_CLOCK = 128
#: Shared-memory time left exposed beside the multiply-adds, per unit of the lane-bound time: a thread tile's rate is
#: x / (x + this), x its shared-memory-bound over lane-bound rate.  From NeuSight's train split (kernel names and
#: grids, SMs holding >= 4 CTAs): 8x8 thread tiles (x = 2) at 0.88 (A100) / 0.92 (V100) of the FP32 peak, 4x4 ones
#: (x = 1) at 0.76 / 0.78-0.80: 0.3 gives 0.87 / 0.77.
SIMT_LDS_EXPOSED = 0.3
#: Resident warps an SM with 64 FP32 lanes needs to keep them busy (scaled by lanes / 64): one 64x64 CTA (2 warps)
#: alone on a V100 SM runs at 0.35 of the saturated rate, one 128x64 (4 warps) at 0.78, one 128x128 (8 warps) at
#: 0.91 (A100: 0.73); NeuSight's train split, rows with fewer CTAs than SMs.  3-6 fit the train rows alike
#: (``benchmarks/neusight_fit.py --simt``); the H100 probe's 2048^3 SGEMM (0.97 of the 4096^3 rate) rules out 10.
SIMT_SATURATION_WARPS = 6.0
#: cuBLAS splits K only for GEMMs deeper than this relative to their output (K > this x sqrt(M N)): NeuSight's train
#: split, A100's grids (``gridDim.z`` > 1 in 0-6% of its rows with K <= 2 sqrt(M N), 55-100% of the deeper ones
#: whose output tiles fill under half its SMs).
SPLIT_K_DEPTH = 2.0
#: ... and while the split grid stays within this many CTAs an SM (NeuSight's train split: A100's split grids hold a
#: median 3.1 CTAs an SM, 7.9 at the 90th percentile; V100's and T4's 9.4 / 12.4 at the median).
SIMT_SPLIT_CTAS_PER_SM = 8
#: A SIMT tile's fixed cost in elements of K (prologue and epilogue): fitted with the rest on NeuSight's train split
#: (0 and 64 fit worse: ``benchmarks/neusight_fit.py --simt``).
SIMT_K_OVERHEAD = 16
#: FP32 lanes per SM where the catalog does not give the clock to derive it (Volta / Turing / GA100 / CDNA).
DEFAULT_LANES = 64.0
SIMT_SOURCE = ("CUDA-core (SIMT) GEMMs: cuBLAS sgemm tiles 128x128 down to 32x128 (NeuSight's kernel names), each at "
               "its shared-memory-bound rate for the card's FP32 lanes per SM, an SM saturated at 6 warps per 64 "
               "lanes, split-K for deep GEMMs only; fitted on NeuSight's train split (fp32 nn.Linear / bmm on "
               "P100/T4/V100/A100); any alignment at the same rate")


#: Architecture names (lower case, as the catalog spells them) of cards without matrix units, for a spec file that
#: does not give ``tensor_cores``: NVIDIA before Volta (Pascal: GP100's fp16 is packed half2 math on the CUDA
#: cores), AMD GCN (MI50's fp16 is packed math) and RDNA 1/2 (no WMMA before RDNA 3).
NO_TENSOR_CORE_ARCHS: tuple[str, ...] = ("pascal", "maxwell", "kepler", "gcn", "rdna 1", "rdna 2", "rdna1", "rdna2")


def has_tensor_cores(spec: GpuSpec) -> bool:
    """Whether a card (``GpuSpec``) has matrix units: its ``tensor_cores`` count, else by architecture name."""
    if spec.tensor_cores is not None:
        return spec.tensor_cores > 0
    return not spec.architecture.strip().lower().startswith(NO_TENSOR_CORE_ARCHS)


def tensor_core_gemms(spec: GpuSpec, precision: str, rate_used: str) -> bool:
    """Whether matmuls the workload flags ``tensor_core`` at ``precision`` run on the card's tensor cores.

    ``rate_used``: whose rate the matmuls run at (``advisor.estimator._peaks.matmul_rate``: ``fp32`` or
    ``fp16-vector`` where a card without 16-bit tensor rates computes 16-bit ones on its CUDA cores).  Never at fp32:
    PyTorch keeps TF32 off for matmuls by default, so an fp32 matmul is cuBLAS SGEMM on the FP32 units (AMD CDNA:
    the matrix cores' fp32 path, ``fp32_matrix``), priced by the SIMT tiles at the profile's ``matmul_vector``,
    at any alignment.  This is the one rule for both doors: the tracer leaves fp32 matmuls unflagged, the analytic
    builders flag every matmul, and either way they are priced alike (``tf32`` is the precision that asks for TF32).
    """
    if precision == "fp32":
        return False
    return has_tensor_cores(spec) and rate_used not in ("fp32", "fp16-vector")


def unaligned_fraction(align1: float, alignment: int = 1) -> float:
    """Fraction of the dense tensor peak a GEMM off the 16-byte grid reaches, from the card's align-1 figure.

    Its dimensions are multiples of ``alignment`` elements but not of 16 bytes; at most 0.9 (it never reaches the
    aligned kernels).
    """
    return min(0.9, align1 * max(1, alignment))


def activation_rows(batch: int, seq_len: int | None) -> tuple[int, ...]:
    """Row counts of a step's activations, which are never a GEMM's leading dimension: sequences and tokens."""
    return (batch, batch * seq_len) if seq_len else (batch,)


def common_alignment(gemms: Sequence[tuple[int, ...]], align_elems: int, rows: Sequence[int] = ()) -> int:
    """The largest power of two (up to ``align_elems``) dividing every dimension (M, N, K) of every GEMM.

    Dimensions in ``rows`` (``activation_rows``) are left out.
    """
    a = 1
    while a < align_elems and all(d % (2 * a) == 0 for g in gemms for d in g[:3] if d not in rows):
        a *= 2
    return a


def aligned(gemms: Sequence[tuple[int, ...]], align_elems: int, rows: Sequence[int] = ()) -> bool:
    """Whether every dimension (M, N, K) of every GEMM is a multiple of ``align_elems`` (16 bytes of the element).

    Dimensions in ``rows`` (``activation_rows``) are left out.
    """
    return all(d % align_elems == 0 for g in gemms for d in g[:3] if d not in rows)


def gemm_flops(shape: Sequence[int]) -> float:
    """FLOPs of one GEMM shape.

    ``(M, N, K)`` or ``(M, N, K, batch)`` (a batched GEMM: one kernel, ``batch`` independent products, as ``torch.bmm``
    runs).
    """
    return 2.0 * shape[0] * shape[1] * shape[2] * (shape[3] if len(shape) > 3 else 1)


def unaligned_gemms(ops: Iterable[Any], align_elems: int, rows: Sequence[int] = ()) -> list[tuple[str, float, int]]:
    """(name, FLOPs, alignment) of the tensor-core GEMM ops (``OpCost``) whose shapes are off the 16-byte grid."""
    return [(op.name, op.flops, common_alignment(op.gemms, align_elems, rows)) for op in ops
            if op.gemms and op.tensor_core and op.flops and not aligned(op.gemms, align_elems, rows)]


def fp32_lanes(spec: GpuSpec) -> float:
    """FP32 lanes per SM: the FP32 peak over 2 FLOP x SMs x boost clock (``DEFAULT_LANES`` where one is missing)."""
    if not (spec.sm_count and spec.boost_clock_mhz and spec.fp32_tflops):
        return DEFAULT_LANES
    return spec.fp32_tflops * 1e12 / (2.0 * spec.sm_count * spec.boost_clock_mhz * 1e6)


def simt_tile_rate(outputs: int, lanes: float) -> float:
    """Fraction of an SM's FP32 peak a SIMT thread tile of ``outputs`` (a x b) sustains, bound by shared memory.

    ``x`` = shared-memory-bound over lane-bound rate: ``SMEM_BYTES_PER_CLOCK`` x FLOP per byte (2ab / 4(a + b)) over
    2 FLOP x ``lanes``; the rate is ``x / (x + SIMT_LDS_EXPOSED)``.
    """
    a: int = 2 ** (int(math.log2(outputs)) // 2)
    b = outputs // a
    x: float = SMEM_BYTES_PER_CLOCK * (2.0 * a * b / (4.0 * (a + b))) / (2.0 * lanes)
    return x / (x + SIMT_LDS_EXPOSED)


def _simt_units(m: int, n: int, k: int, sms: int, lanes: float, batch: int) -> float:
    """Multiply-add units the busiest SM spends on the best SIMT schedule (see the module docstring).

    Per tile and split: the busiest SM's CTAs x tile area x (K slice + overhead), over the tile's shared-memory-bound
    rate (relative to the best tile's) and the SM's occupancy (resident warps over ``SIMT_SATURATION_WARPS``).
    """
    best_rate = max(simt_tile_rate(o, lanes) for *_, o in SIMT_TILES)
    saturation = SIMT_SATURATION_WARPS * lanes / DEFAULT_LANES
    deep = k > SPLIT_K_DEPTH * math.sqrt(m * n)
    best = math.inf
    for tm, tn, warps, outputs in SIMT_TILES:
        rate = simt_tile_rate(outputs, lanes) / best_rate
        tiles = batch * math.ceil(m / tm) * math.ceil(n / tn)
        for split in SPLIT_K:
            if split > 1 and (not deep or tiles * split > SIMT_SPLIT_CTAS_PER_SM * sms or k // split < 256):
                break
            per_sm = math.ceil(tiles * split / sms)
            occupancy = min(1.0, per_sm * warps / saturation)
            best = min(best, per_sm * tm * tn * (math.ceil(k / split) + SIMT_K_OVERHEAD) / (rate * occupancy))
    return best


def _tiled_units(m: int, n: int, k: int, sms: int, simt: bool = False, batch: int = 1,
                 lanes: float = DEFAULT_LANES) -> float:
    """Multiply-add "units" one SM spends on the best schedule.

    Waves x tile area x (K slice + overhead) / rate (``simt``: the CUDA-core tiles, ``_simt_units``; ``batch``: the
    tiles of that many independent products share the waves, as one batched kernel's grid does).
    """
    if simt:
        return _simt_units(m, n, k, sms, lanes, batch)
    best = math.inf
    for tm, tn, rate in TILES:
        tiles = batch * math.ceil(m / tm) * math.ceil(n / tn)
        for split in SPLIT_K:
            if split > 1 and (tiles * split > 2 * sms or k // split < 256):
                break
            waves = math.ceil(tiles * split / sms)
            best = min(best, waves * tm * tn * (math.ceil(k / split) + K_OVERHEAD) / rate)
    return best


def quantization_factor(m: int, n: int, k: int, sms: int, simt: bool = False,
                        lanes: float = DEFAULT_LANES) -> float:
    """Tiled work / useful work (>= 1 for a GEMM that fills every tile and wave exactly)."""
    return _tiled_units(m, n, k, sms, simt, lanes=lanes) * sms / (m * n * k) if m and n and k else 1.0


def gemm_seconds(m: int, n: int, k: int, *, rate_flops: float, sms: int, simt: bool = False,
                 batch: int = 1, lanes: float = DEFAULT_LANES) -> float:
    """Seconds of one GEMM at a card's large-shape rate ``rate_flops`` (the rate a 4096^3 GEMM reaches); ``simt``.

    On the CUDA cores (``SIMT_TILES``, ``lanes``: the card's FP32 lanes per SM, ``fp32_lanes``); ``batch``: a batched
    GEMM of that many products.
    """
    if not (m and n and k and batch):
        return 0.0
    ref = quantization_factor(*REFERENCE, sms, simt, lanes)
    per_sm = rate_flops * ref / sms  # the SM's own rate, before quantization
    return 2.0 * _tiled_units(m, n, k, sms, simt, batch, lanes) / per_sm


def unaligned_seconds(shapes: Sequence[Sequence[int]], reps: float, *, rate_flops: float, fallback_flops: float,
                      sms: int) -> float:
    """Seconds of GEMMs off the 16-byte grid: the slower of their aligned tile time and their FLOPs at the fallback.

    cuBLAS's alignment-1/2 kernels tile the output as its aligned ones do, at a lower rate, so neither tiling nor
    the rate can make them faster than the same shapes on the grid (``reps`` repetitions of ``shapes``).
    """
    tiled = reps * sum(shape_seconds(g, rate_flops=rate_flops, sms=sms) for g in shapes)
    flat = reps * sum(gemm_flops(g) for g in shapes) / min(rate_flops, fallback_flops)
    return max(tiled, flat)


def shape_seconds(shape: Sequence[int], *, rate_flops: float, sms: int, simt: bool = False,
                  lanes: float = DEFAULT_LANES) -> float:
    """``gemm_seconds`` of an ``(M, N, K)`` or ``(M, N, K, batch)`` shape (``OpCost.gemms``)."""
    return gemm_seconds(shape[0], shape[1], shape[2], rate_flops=rate_flops, sms=sms, simt=simt,
                        batch=shape[3] if len(shape) > 3 else 1, lanes=lanes)


def matmul_seconds(op: PreparedOp, rates: CardRates, flops: float, peak: float, dim: int) -> float:
    """A matmul-like op's compute side at ``peak``, in seconds.

    Its GEMMs by tiles and waves where their shapes are known (the unaligned kernels' rate off the 16-byte grid, the
    SIMT tiles on CUDA cores), else ``flops`` on the small-op shape curve of its smallest dimension ``dim`` (0:
    unknown; vector ops take ``peak`` as it is).
    """
    plan, sms, cls = op.plan, rates.sm_count, op.cls
    if plan is not None and sms and cls != VECTOR and not op.steps:
        reps, shapes = plan[0], plan[1]
        base = (rates.unaligned_conv_flops if cls in CONV_CLASSES else rates.unaligned_flops if cls == TENSOR
                else 0.0)
        if len(plan) > 2 and base:  # off the 16-byte grid: tensor-core kernels fall back to align-1/2/4 ones
            return unaligned_seconds(shapes, reps, rate_flops=peak, fallback_flops=base * plan[2], sms=sms)
        simt = cls == MATMUL_VECTOR or (cls == TENSOR and not rates.tensor_cores)
        seconds: float = reps * sum(shape_seconds(g, rate_flops=peak, sms=sms, simt=simt, lanes=rates.fp32_lanes)
                                    for g in shapes)
        return seconds
    if dim and cls != VECTOR:
        peak = max(peak * dim / (dim + rates.half_dim), peak * 0.02)
    return flops / peak


@register("matmul")
def price_matmul(op: PreparedOp, rates: CardRates) -> tuple[float, float, float]:
    """A matmul: ``matmul_seconds`` at its class's peak against its bytes."""
    tc = matmul_seconds(op, rates, op.flops, rates.peaks[op.cls], op.min_dim)
    tm = bytes_seconds(op, rates, rates.memory_bytes_s)
    return tc, tm, max(tc, tm)
