"""Achieved-vs-peak efficiencies of a card, and how they fall for small ops.

A spec sheet gives peaks; real kernels reach a fraction of them.  The fractions reached on large shapes inside
real models are per micro-architecture, in the estimator profiles (``advisor/profiles/<id>.toml``, read by
``advisor.estimator.profiles``), each with its evidence and source.  A probe of the card replaces them
(``advisor.estimator.calibrate``).  Small ops run further below peak: ``compute_efficiency`` scales the
large-shape figure by a saturating curve in the op's smallest dimension whose half-point grows with the number
of SMs (a wide GPU needs more tiles to fill one wave).  The host-side figures here are the host's, the same for
every card.

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
            set it comes from kernel-level measurements (the profile cites them); a calibrated ``matmul`` replaces it
            (``replace``), since a probe's GEMM of the estimate's precision is the better figure for that card.
        norm_memory: achieved bandwidth of normalization kernels (layer/RMS/group norm and their backward) relative
            to ``memory``, per byte the op's tensors hold: PyTorch's layer norm reads its input twice (a
            statistics pass, then the normalize pass), so it moves ~3 tensor sizes for the 2 counted.  1.0 where
            no kernel-level data exists.
        evidence: the profile's evidence level (``advisor.estimator.profiles.EVIDENCE``).
        fused_attention: 16-bit SDPA runs fused (FlashAttention / cuDNN) kernels, priced by their tiles.
        layout_transposes: cuDNN's tensor-core convolutions transpose NCHW tensors.
        conv_fp32_math: how the convolution library runs an fp32 convolution (``advisor.estimator.conv``).
        unaligned: an align-1 GEMM's fraction of the dense tensor peak (``advisor.estimator.gemm``).
        workspace_bytes: the BLAS workspaces a process holds.
        unified_memory: CPU and GPU share the memory (no host->device copy).
        fp32_matrix: fp32 GEMMs' rate over the vector peak (AMD CDNA runs them on its matrix cores).
        attention_upgrade: what card would run fused attention (advice), or "".
        fp8_matmul: fp8 GEMMs' fraction of ``matmul`` (the family's fp8 / bf16 matmul-table ratio), for an
            uncalibrated fp8 estimate.
        library_ops: ((call kind, phase), host op-equivalents beyond a generic op) of the library calls
            (``advisor.estimator.host``).
        attention_backward_floor: (seconds per call, seconds per 128-query block) below which a fused attention
            backward call does not finish on this family (``advisor.estimator.attention``); (0, 0): none.

    The defaults of the keyword fields are the ``generic`` profile's; every card's come from its profile
    (``advisor.estimator.profiles.efficiency_for``).
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
    evidence: str = "inherited"
    fused_attention: bool = False
    layout_transposes: bool = False
    conv_fp32_math: str = "tf32"
    unaligned: float = 0.35
    workspace_bytes: float = 8 * MiB
    unified_memory: bool = False
    fp32_matrix: float = 1.0
    attention_upgrade: str = ""
    fp8_matmul: float = 1.0
    library_ops: tuple[tuple[tuple[str, str], float], ...] = ()
    attention_backward_floor: tuple[float, float] = (0.0, 0.0)

    def replace(self, **changes: float | str | None) -> ArchEfficiency:
        """A copy with some figures replaced (calibration).

        A new ``matmul`` (a probe's, a fraction of the spec's rate at the estimate's precision) also stands for
        CUDA-core GEMMs unless ``matmul_vector`` is given too.
        """
        if "matmul" in changes and "matmul_vector" not in changes:
            changes["matmul_vector"] = None
            changes.setdefault("fp32_matrix", 1.0)
        # each keyword names a field of its own type (a figure, ``matmul_vector``'s None, a text): no one type fits all
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @property
    def vector_matmul(self) -> float:
        """Efficiency of non-tensor GEMMs over the vector peak: ``matmul_vector`` (else ``matmul``) x fp32_matrix."""
        return (self.matmul if self.matmul_vector is None else self.matmul_vector) * self.fp32_matrix

    def library_call_ops(self, kind: str, phase: str) -> float:
        """Host op-equivalents beyond a generic op of one library call of ``kind`` in ``phase`` (0: none)."""
        for key, ops in self.library_ops:
            if key == (kind, phase):
                return ops
        return 0.0


CONTEXT_SOURCE = ("CUDA context with lazy module loading (default since CUDA 11.7 / PyTorch 2.x): ~300-500 MiB "
            "reported in PyTorch forum threads and torch.cuda memory notes (the context is not in "
            "memory_allocated but nvidia-smi shows it)")

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
