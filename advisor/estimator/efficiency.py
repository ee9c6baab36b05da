"""Default achieved-vs-peak efficiencies per architecture, and how they fall for small ops.

A spec sheet gives peaks; real kernels reach a fraction of them.  The figures here are the
fractions reached on large shapes inside real models, each with its source.  For GEMMs that is
below the square-GEMM microbenchmark (quoted in each source): a model's mix of shapes, transposed
backward GEMMs, bias/activation epilogues and power-limited clocks run ~10-20% under it (Megatron-LM,
Narayanan et al. 2021: 52% MFU of A100 peak end to end with non-GEMM time included; MosaicML
llm-foundry throughput tables: ~40-50% MFU on A100/H100), and the published-measurements table
(tests/data) agreed once non-GEMM ops were costed separately.  Non-GEMM time is modelled per op,
so these are GEMM-only figures (~0.72 A100, ~0.62 H100).  A probe of the card replaces them
(``advisor.estimator.calibrate``).  Small ops run further below peak: ``compute_efficiency``
scales the large-shape figure by a saturating curve in the op's smallest dimension whose
half-point grows with the number of SMs (a wide GPU needs more tiles to fill one wave).

Pure arithmetic: no torch, no I/O.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from advisor.units import MiB

#: Host seconds per operator PyTorch eager dispatches in a forward pass (Python, nn.Module call, dispatcher,
#: autocast, autograd recording), and the fraction of it a backward op costs (the C++ autograd engine, no
#: Python).  Measured with Hugging Face transformers 4.46.3 BERT / GPT-2 / Llama blocks at tiny widths on CPU
#: tensors (compute negligible; benchmarks/count_eager_ops.py --time): 9.8-11.9 us per dispatched op forward,
#: 5.6 us backward, on a 2-vCPU AMD EPYC VM.  On a CUDA host each kernel adds a cudaLaunchKernel call while
#: server cores run Python faster; taken as equal until a probe of the host replaces it (its host_dispatch and
#: host_backward kernels; else its bare launch figure sets the launch call).  The figure moves with the machine and
#: torch: re-run on 2026-11-28 (same VM type, torch 2.14.1, transformers 4.46.3) the script gave 1.6-6.1 us forward
#: and 2.1-3.4 us backward per op, and validate's zoo modules 3.7-6.8 / 2.8-6.2 (benchmarks/host_per_op_zoo.py)
#: on the same VM: Hugging Face's modules cost no more per op than the zoo's, so the probe's zoo-model figure
#: serves the analytic presets too.  The default is kept: the replayed GPU rows were predicted with it.
HOST_OP_S = 10e-6
HOST_BACKWARD_FRACTION = 0.55
#: The same fraction for a traced module, whose own ops are counted (the analytic builders count Hugging Face's):
#: how much of a forward op's host time a backward op costs depends on how much Python the module's forward runs
#: per op (a backward op runs in the C++ autograd engine).  MEASURED the same way on CPU tensors
#: (benchmarks/host_per_op_zoo.py, 2-vCPU EPYC dev VM, 2026-11-28): the zoo's gpt2-tiny 0.87, llama-tiny 0.94, a
#: tiny torchvision ViT 0.62 / 0.69 (2 / 4 layers); median 0.78.  Hugging Face's blocks, Python-heavier per op,
#: are the 0.55 above.
TRACED_HOST_BACKWARD_FRACTION = 0.78
#: Forward eager op / bare tiny op (3.6 us measured beside the figures above on the same VM).  Used for a CPU
#: "card" only: on a GPU host the bare op also pays cudaLaunchKernel and does not scale this way.
HOST_OP_PER_BARE_OP = 2.8
#: Host seconds of the CUDA launch call (cudaLaunchKernel) per kernel an eager op launches, on top of its CPU
#: dispatch: a few microseconds natively (NVIDIA, "Getting Started with CUDA Graphs", 2019: launch overheads of
#: ~2-4 us per kernel; 4 us taken).  A probe replaces it with its bare-op launch figure less a bare op's CPU
#: dispatch (HOST_OP_S / HOST_OP_PER_BARE_OP): 11.1 - 3.6 = 7.5 us on the virtualised H100/H200 hosts.
HOST_LAUNCH_S = 4e-6
HOST_SOURCE = ("eager host time per dispatched op measured on HF transformers blocks (benchmarks/count_eager_ops.py): "
               "forward ~10 us, backward ~5.6 us on a 2-vCPU EPYC VM; a traced module's backward op "
               f"{TRACED_HOST_BACKWARD_FRACTION:g} of a forward op (benchmarks/host_per_op_zoo.py: leaner Python per "
               "op than HF's)")


@dataclass(frozen=True, slots=True)
class ArchEfficiency:
    """Large-shape efficiencies (fractions of the spec peak) of one architecture.

    Attributes:
        arch: architecture key (``hopper``, ``ampere``, ...).
        matmul: tensor-core GEMM (fp16/bf16/tf32/fp8) as a fraction of the dense peak.
        conv: convolution (cuDNN/MIOpen implicit GEMM) as a fraction of the dense peak.
        vector: non-tensor ops' compute as a fraction of the vector (FP32) peak.
        memory: achieved copy bandwidth as a fraction of the memory-bandwidth peak.
        h2d: achieved pinned host->device copy as a fraction of the PCIe one-direction peak.
        launch_overhead_s: GPU-side gap per kernel launch in an eager step (seconds).
        cuda_context_bytes: memory the runtime context takes on the card (nvidia-smi shows it).
        source: where these figures come from.
        host_op_s: host seconds per operator dispatched by PyTorch eager in a forward pass (backward ops
            cost ``HOST_BACKWARD_FRACTION`` of it): a host property, the same default for every card.
        host_launch_s: host seconds of the launch call per kernel (``HOST_LAUNCH_S``), on top of host_op_s.
        host_backward_op_s: host seconds per backward op, measured by a probe of this host (its autograd engine's
            cost per op, the launch call included); 0: a backward op costs ``backward_fraction`` of ``host_op_s``.
        clock: fraction of the boost clock the card sustains under a long dense GEMM (``advisor.estimator.power``;
            a probe's clock samples replace it).  The compute figures above are fractions of the peak at THAT
            clock, so a compute rate is peak x clock x efficiency.
        matmul_vector: GEMMs on the CUDA cores (fp32 with TF32 off, PyTorch's matmul default; 16-bit on cards
            without tensor cores) as a fraction of the vector peak; ``None``: the ``matmul`` figure.  Where it is
            set it comes from kernel-level measurements (``KERNEL_FITS``); a calibrated ``matmul`` replaces it
            (``replace``), since a probe's GEMM of the estimate's precision is the better figure for that card.
        norm_memory: achieved bandwidth of normalization kernels (layer/RMS/group norm and their backward) relative
            to ``memory``, per byte the op's tensors hold: PyTorch's layer norm reads its input twice (a
            statistics pass, then the normalize pass), so it moves ~3 tensor sizes for the 2 counted.  1.0 where
            no kernel-level data exists (``KERNEL_FITS``).
    """

    arch: str
    matmul: float
    conv: float
    vector: float
    memory: float
    h2d: float
    launch_overhead_s: float
    cuda_context_bytes: float
    source: str
    host_op_s: float = HOST_OP_S
    host_launch_s: float = HOST_LAUNCH_S
    clock: float = 1.0
    matmul_vector: float | None = None
    norm_memory: float = 1.0
    host_backward_op_s: float = 0.0

    def replace(self, **changes: float | str | None) -> ArchEfficiency:
        """A copy with some figures replaced (calibration).

        A new ``matmul`` also stands for CUDA-core GEMMs unless ``matmul_vector`` is given too.
        """
        if "matmul" in changes and "matmul_vector" not in changes:
            changes["matmul_vector"] = None
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @property
    def vector_matmul(self) -> float:
        """Efficiency of GEMMs on the CUDA cores (``matmul_vector``, else ``matmul``)."""
        return self.matmul if self.matmul_vector is None else self.matmul_vector


CONTEXT_SOURCE = ("CUDA context with lazy module loading (default since CUDA 11.7 / PyTorch 2.x): ~300-500 MiB "
            "reported in PyTorch forum threads and torch.cuda memory notes (the context is not in "
            "memory_allocated but nvidia-smi shows it)")

#: Architecture key -> defaults from the literature (``DEFAULTS`` adds ``KERNEL_FITS`` on top).
_LITERATURE: dict[str, ArchEfficiency] = {
    "pascal": ArchEfficiency(
        "pascal", matmul=0.80, conv=0.70, vector=0.75, memory=0.85, h2d=0.80, launch_overhead_s=6e-6,
        cuda_context_bytes=300 * MiB,
        source="No tensor cores: FP32/FP16 SGEMM ~80% of peak (cuBLAS on P100, NVIDIA 'Pascal tuning guide' / "
               "Jia et al. 2018 microbenchmarks); HBM2/GDDR5X copy ~85% (BabelStream results, Deakin et al.)"),
    "volta": ArchEfficiency(
        "volta", matmul=0.70, conv=0.55, vector=0.80, memory=0.88, h2d=0.80, launch_overhead_s=5e-6,
        cuda_context_bytes=350 * MiB,
        source="V100 HMMA GEMM ~100 of 125 TFLOP/s (Jia et al., 'Dissecting the NVIDIA Volta GPU "
               "Architecture via Microbenchmarking', 2018: ~80%); HBM2 copy ~790 of 900 GB/s (same paper, ~88%)"),
    "turing": ArchEfficiency(
        "turing", matmul=0.62, conv=0.50, vector=0.75, memory=0.85, h2d=0.80, launch_overhead_s=5e-6,
        cuda_context_bytes=350 * MiB,
        source="T4/RTX 20xx FP16 GEMM ~65-75% of peak (Jia et al., 'Dissecting the NVidia Turing T4 GPU via "
               "Microbenchmarking', 2019); GDDR6 copy ~85%; the T4's 70 W clock drop is modelled apart "
               "(advisor.estimator.power)"),
    "ampere": ArchEfficiency(
        "ampere", matmul=0.72, conv=0.55, vector=0.85, memory=0.90, h2d=0.85, launch_overhead_s=4e-6,
        cuda_context_bytes=450 * MiB,
        source="A100 bf16 cuBLAS GEMM ~260-270 of 312 TFLOP/s (~85%; NVIDIA 'Deep Learning Performance' "
               "matmul guide and common cuBLAS benchmarks); HBM2e copy ~1.8 of 2.0 TB/s (~90%, BabelStream)"),
    "ada": ArchEfficiency(
        "ada", matmul=0.80, conv=0.65, vector=0.80, memory=0.88, h2d=0.85, launch_overhead_s=4e-6,
        cuda_context_bytes=450 * MiB,
        source="RTX 4090 / L40S fp16 GEMM with FP32 accumulate ~75-85% of the dense figure (community cuBLAS "
               "benchmarks, e.g. stas00/ml-engineering 'maximum achievable matmul FLOPS' table); GDDR6X copy ~88%"),
    "hopper": ArchEfficiency(
        "hopper", matmul=0.62, conv=0.45, vector=0.80, memory=0.88, h2d=0.85, launch_overhead_s=4e-6,
        cuda_context_bytes=500 * MiB,
        source="H100 SXM bf16 cuBLAS GEMM ~700-760 of 989 TFLOP/s at its best shapes (~75-78%; stas00/ml-engineering "
               "'maximum achievable matmul FLOPS' table; the shared H200 / H100 probes: 0.79 / 0.77 bf16, 0.74 / 0.72 "
               "fp8), but 0.62 without a probe: one figure for every precision, and at 0.77 the published H100 fp8 "
               "rows (TensorRT-LLM) go +18 / +32% -> +31 / +59% optimistic; HBM3 copy ~2.9-3.0 of 3.35 TB/s (~88%, "
               "BabelStream / NVIDIA)"),
    "blackwell": ArchEfficiency(
        "blackwell", matmul=0.62, conv=0.45, vector=0.80, memory=0.88, h2d=0.85, launch_overhead_s=4e-6,
        cuda_context_bytes=550 * MiB,
        source="Assumed like Hopper (B200 cuBLAS GEMM reported ~70-80% of dense peak in early MLPerf-era "
               "reports); to be replaced by a probe of the card"),
    "cdna2": ArchEfficiency(
        "cdna2", matmul=0.45, conv=0.35, vector=0.70, memory=0.80, h2d=0.80, launch_overhead_s=6e-6,
        cuda_context_bytes=400 * MiB,
        source="MI250X rocBLAS bf16 GEMM ~50-60% of peak per GCD (Frontier/OLCF and chipsandcheese "
               "measurements); HBM2e copy ~80% (BabelStream HIP results)"),
    "cdna3": ArchEfficiency(
        "cdna3", matmul=0.40, conv=0.30, vector=0.70, memory=0.80, h2d=0.80, launch_overhead_s=6e-6,
        cuda_context_bytes=500 * MiB,
        source="MI300X hipBLASLt bf16 GEMM ~600-700 of 1307 TFLOP/s (~45-55%; SemiAnalysis 'MI300X vs H100 vs "
               "H200 training' 2024-12 and chipsandcheese); HBM3 copy ~4.2 of 5.3 TB/s (~80%)"),
    "rdna2": ArchEfficiency(
        "rdna2", matmul=0.60, conv=0.45, vector=0.75, memory=0.85, h2d=0.80, launch_overhead_s=8e-6,
        cuda_context_bytes=400 * MiB,
        source="No matrix units: FP16/FP32 GEMM on shaders ~60% of peak with rocBLAS (community ROCm "
               "benchmarks); GDDR6 copy ~85%; assumed, replace with a probe"),
    "rdna3": ArchEfficiency(
        "rdna3", matmul=0.50, conv=0.40, vector=0.70, memory=0.85, h2d=0.80, launch_overhead_s=8e-6,
        cuda_context_bytes=400 * MiB,
        source="RX 7900 XTX WMMA fp16 GEMM ~50% of the dual-issue peak (chipsandcheese RDNA3 articles, "
               "community ROCm benchmarks); GDDR6 copy ~85%"),
    "orin": ArchEfficiency(
        "orin", matmul=0.65, conv=0.55, vector=0.70, memory=0.75, h2d=1.0, launch_overhead_s=8e-6,
        cuda_context_bytes=250 * MiB,
        source="Jetson AGX Orin: LPDDR5 shared with the CPU, copy ~75% of peak; GEMM ~65% (NVIDIA Jetson "
               "benchmarks forum reports); unified memory, so no host->device copy"),
}

#: Per-architecture figures fitted on public kernel-level measurements: NeuSight's train split (Lee et al.,
#: "NeuSight: Forecasting GPU Performance for Deep Learning Training and Inference", ASPLOS 2025; github.com/
#: sitar-lab/NeuSight, MIT license; files ``scripts/asplos/data/dataset/train/collect/{linear,bmm,<elementwise
#: op>,ln,softmax}`` and ``train/{elem,ln,softmax}.csv``: PyTorch 2.1 fp32 ops timed with CUDA events on a Tesla
#: P4, P100-PCIe-16GB, T4, V100-PCIe-32GB and A100-PCIe-40GB).  Its test split and end-to-end labels were not
#: used for fitting (they measure generalization: docs/accuracy-kernels.md).  ``benchmarks/neusight_fit.py``
#: prints these figures, per card and per architecture (median of its cards):
#:
#: * ``memory``: achieved bandwidth of PyTorch's elementwise kernels (slope of time vs bytes over ops moving
#:   >= 16 MiB) over the spec bandwidth: P4 0.753, P100 0.746, T4 0.750, V100 0.916, A100-40GB 0.848.  These
#:   replace the copy-benchmark (BabelStream-style) figures: the estimator prices model ops, not copies.
#: * ``matmul_vector``: fp32 GEMMs on the CUDA cores through the SIMT tile/wave model (``advisor.estimator.gemm``,
#:   ``SIMT_TILES``), as a fraction of the FP32 peak at the sustained clock, median over compute-bound
#:   ``nn.Linear`` rows with every dimension >= 512: P100 0.660, T4 0.583 (at the power model's 69% clock), V100
#:   0.880, A100-40GB 0.826.  The P4 (0.22, falling with GEMM size: its 75 W cap holds the clock far below the
#:   power model's) is left out of the Pascal figure.
#: * ``norm_memory``: bandwidth of ``nn.LayerNorm`` (forward, fp32) over that of the elementwise kernels on the
#:   same card, both counted as input + output bytes: P4 0.71, P100 0.60, T4 0.79, V100 0.67, A100-40GB 0.80
#:   (2/3 if the input is read twice from DRAM, more where the second read hits L2).
#:
#: Hopper, Blackwell, Ada and the AMD architectures have no train data and keep the literature figures.
KERNEL_FITS: dict[str, dict[str, float]] = {
    "pascal": {"memory": 0.75, "matmul_vector": 0.66, "norm_memory": 0.65},
    "turing": {"memory": 0.75, "matmul_vector": 0.58, "norm_memory": 0.79},
    "volta": {"memory": 0.92, "matmul_vector": 0.88, "norm_memory": 0.67},
    "ampere": {"memory": 0.85, "matmul_vector": 0.83, "norm_memory": 0.80},
}
KERNEL_FITS_SOURCE = ("NeuSight train split (ASPLOS 2025, github.com/sitar-lab/NeuSight, MIT): PyTorch 2.1 fp32 "
                      "kernels on P4/P100/T4/V100/A100-40GB, fitted by benchmarks/neusight_fit.py")


#: Kernel-level figures from the H200 per-kernel profile (tests/data/gpu-runs/h200-2026-11-28/profile-ops.json;
#: the H100 rows check them).  ``norm_memory`` 0.36: PyTorch's LayerNorm kernels are bound by per-row work, not
#: bytes: in GPT-2 amp b16 (25 LayerNorms over 16384 x 768 fp32) the forward moved its 100 MB in 48 us (2.1 TB/s)
#: and the backward's grad-input + GammaBeta kernels took 118 us for the 150 MB the estimator counts (the GammaBeta
#: kernel reads x and dy again), i.e. 250 MB in 166 us = 1.5 TB/s, 0.36 of the 4.2 TB/s its elementwise kernels
#: reach; BERT and ViT's LayerNorms agree within 10%.  NCHW training batch norm keeps its own element rate
#: (``advisor.estimator.time``).
PROFILE_FITS: dict[str, dict[str, float]] = {"hopper": {"norm_memory": 0.36}}
PROFILE_FITS_SOURCE = "H200 per-kernel profile (torch.profiler, torch 2.11): LayerNorm forward + backward kernels"


def _with_fits(eff: ArchEfficiency) -> ArchEfficiency:
    for table, source in ((KERNEL_FITS, KERNEL_FITS_SOURCE), (PROFILE_FITS, PROFILE_FITS_SOURCE)):
        fits = table.get(eff.arch)
        if fits:
            names = ", ".join(f"{k} {v:.2f}" for k, v in fits.items())
            eff = dataclasses.replace(eff, **fits, source=f"{eff.source}; kernel-level fits ({names}): {source}")
    return eff


#: Architecture key -> defaults.  Keys are lower-case; ``arch_key`` maps catalog names onto them.
DEFAULTS: dict[str, ArchEfficiency] = {key: _with_fits(eff) for key, eff in _LITERATURE.items()}

#: Used when a card's architecture is not in ``DEFAULTS``.
GENERIC = ArchEfficiency(
    "generic", matmul=0.70, conv=0.60, vector=0.75, memory=0.85, h2d=0.80, launch_overhead_s=5e-6,
    cuda_context_bytes=450 * MiB,
    source="generic defaults (architecture not in the table): a middle of the per-architecture figures")

_ALIASES = {"ada lovelace": "ada", "lovelace": "ada", "ada": "ada", "cdna 2": "cdna2", "cdna 3": "cdna3",
            "rdna 2": "rdna2", "rdna 3": "rdna3", "cdna3": "cdna3", "cdna2": "cdna2"}


def arch_key(architecture: str, segment: str | None = None) -> str:
    """Map a catalog architecture name ("Ada Lovelace", "CDNA 3", "Hopper") to a ``DEFAULTS`` key."""
    text = architecture.strip().lower()
    if segment == "edge" and text in ("ampere", "orin"):
        return "orin"
    if text in _ALIASES:
        return _ALIASES[text]
    compact = text.replace(" ", "").replace("-", "")
    for key in DEFAULTS:
        if compact.startswith(key):
            return key
    return "generic"


def defaults_for(architecture: str, segment: str | None = None) -> ArchEfficiency:
    """The default efficiencies of an architecture (``GENERIC`` when unknown)."""
    return DEFAULTS.get(arch_key(architecture, segment), GENERIC)


#: Smallest dimension at which an op on a 108-SM card reaches half of its large-shape efficiency.
HALF_DIM_REF = 32.0
REF_SMS = 108.0


def shape_factor(min_dim: int | None, sm_count: int | None) -> float:
    """Fraction of the large-shape efficiency an op of this smallest dimension reaches (0-1].

    A saturating curve d / (d + d_half) with d_half = 32 x sqrt(sm_count / 108): a skinny GEMM
    (d = 8, as in batch-8 decoding) pads its tiles and fills few SMs (~0.2); d = 64 reaches ~0.67,
    256 ~0.89, 4096 ~0.99 on an A100; wider cards need bigger ops to fill every SM in one wave.
    Unknown ``min_dim`` means a large op (1.0).
    """
    if min_dim is None or min_dim <= 0:
        return 1.0
    half = HALF_DIM_REF * math.sqrt((sm_count or REF_SMS) / REF_SMS)
    return min_dim / (min_dim + half)


def compute_efficiency(base: float, min_dim: int | None, sm_count: int | None) -> float:
    """Shape-aware efficiency: the large-shape ``base`` times ``shape_factor`` (never below 2%)."""
    return max(0.02, base * shape_factor(min_dim, sm_count))
