"""Step time: a roofline per op at the card's rates, and where its seconds go.

For every prepared op (``advisor.estimator.ops``): max(flops / (peak x compute efficiency), bytes / (bandwidth x
memory efficiency)) + count x launch overhead.  ``card_rates`` gathers what one card achieves for one precision,
each rate from its mechanism's module (GEMM tiles and alignment ``gemm``, fused attention ``attention``,
index-bound elementwise ``index_bound``, norms ``norms``, convolution layouts and Winograd ``conv``, recurrent
steps ``recurrent``, optimizer passes ``optimizer``); ``ops_time_detail`` prices every op at them with the
function its mechanism registered for its kind (``advisor.estimator.pricing.PRICING``).  In PyTorch
eager the host dispatches every op and the GPU runs behind it: the host's side is ``advisor.estimator.host``.
Tensor-core ops use the peak of the workload's precision, everything else the vector peak (FP32, or the 16-bit
vector rate where the card lists one); small ops run below it (the GEMM shape curve).  Pure arithmetic over
tuples prepared once per workload.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from advisor.errors import EstimateError
from advisor.estimator._peaks import matmul_rate
from advisor.estimator.attention import ATTENTION_BACKWARD_RATE, SFU_EXPONENTIALS_PER_SM_CYCLE
from advisor.estimator.conv import (
    LAYOUT_TRANSPOSE_ELEMENTS_PER_SM_CYCLE,
    WINOGRAD_MULTIPLY_REDUCTION,
    fp32_conv_rate,
)
from advisor.estimator.efficiency import HALF_DIM_REF, REF_SMS
from advisor.estimator.gemm import DEFAULT_LANES, fp32_lanes, has_tensor_cores, tensor_core_gemms, unaligned_fraction
from advisor.estimator.index_bound import STRIDED_ELEMENTS_PER_SM_CYCLE
from advisor.estimator.norms import BN_NCHW_ELEMENTS_PER_SM_CYCLE
from advisor.estimator.ops import PreparedOp
from advisor.estimator.optimizer import foreach_bandwidth_fraction
from advisor.estimator.power import low_draw_clock
from advisor.estimator.pricing import GROUPS, PHASES, PRICING
from advisor.estimator.recurrent import RECURRENT_STEP_S
from advisor.workload.costs import compute_bytes

#: ``eager``: PyTorch eager (host dispatch can bound a phase); ``graph``: CUDA graphs / compiled runtimes.
RUNTIMES: tuple[str, ...] = ("eager", "graph")


def check_runtime(runtime: Any) -> None:
    """Refuse a runtime name outside ``RUNTIMES``, naming the accepted ones."""
    if runtime not in RUNTIMES:
        raise EstimateError(f"unknown runtime {runtime!r}", hint=f"accepted: {', '.join(RUNTIMES)}")



@dataclass(frozen=True, slots=True)
class CardRates:
    """What one card achieves for one precision (FLOP/s, bytes/s, seconds), calibrated or default."""

    tensor_flops: float
    conv_flops: float
    vector_flops: float
    matmul_vector_flops: float
    memory_bytes_s: float
    launch_s: float
    half_dim: float  # d_half of the shape curve (efficiency.shape_factor) for this card's SM count
    sm_count: int = 0  # 0: unknown, GEMMs priced by the shape curve alone
    tensor_cores: bool = True  # the precision's matmuls run on tensor cores (else the CUDA cores' SIMT tiles)
    fp32_lanes: float = DEFAULT_LANES  # FP32 lanes per SM (gemm.fp32_lanes): the SIMT tiles' shared-memory bound
    unaligned_flops: float = 0.0  # rate of an align-1 GEMM, doubling per alignment step (0: not modelled)
    unaligned_conv_flops: float = 0.0  # the same for convolutions (their peak: conv.fp32_conv_rate for fp32)
    conv_simt: bool = False  # convolutions off the tensor-core tiles tile as the fp32 GEMMs do (conv.CONV_FP32_MATHS)
    bn_elements_s: float = 0.0  # NCHW batch-norm elements per second (0: priced by its bytes)
    layout_transposes: bool = False  # cuDNN tensor-core convs transpose NCHW tensors (NVIDIA Volta and later)
    transpose_bytes_s: float = 0.0  # bytes/s of those transposes: the bandwidth, or their element rate if slower
    step_latency_s: float = 0.0  # one dependent recurrent time step (RECURRENT_STEP_S on a GPU)
    norm_bytes_s: float = 0.0  # normalization kernels' achieved bandwidth (eff.norm_memory; 0: memory_bytes_s),
    # for every norm op not priced by the NCHW batch-norm element rate (inference batch norm included)
    strided_elements_s: float = 0.0  # index-bound elementwise elements per second (0: priced by bytes alone)
    winograd_factor: float = 1.0  # 3x3 stride-1 convolutions' speed-up over direct FLOPs (WINOGRAD_MULTIPLY_REDUCTION)
    attention_backward_rate: float = 1.0  # fused attention's backward rate over its forward's (ATTENTION_BACKWARD_RATE)
    exponentials_s: float = 0.0  # fused attention's softmax exponentials per second (0: no fused kernels, by FLOPs)
    optimizer_bytes_s: float = 0.0  # the foreach optimizer kernels' bandwidth (FOREACH_BANDWIDTH_FRACTION; 0: bw)
    attention_backward_floor: tuple[float, float] = (0.0, 0.0)  # fused attention backward: s per call, per block
    # the peak of each op class (``pricing.TENSOR`` ...): tensor, conv, CUDA-core matmul, vector, Winograd conv
    peaks: tuple[float, float, float, float, float] = field(init=False)

    def __post_init__(self) -> None:
        """Each op class's peak, once per card (the pricing functions read ``peaks[op.cls]``)."""
        object.__setattr__(self, "peaks", (self.tensor_flops, self.conv_flops, self.matmul_vector_flops,
                                           self.vector_flops, self.conv_flops * self.winograd_factor))


def card_rates(spec: Any, precision: str, eff: Any, tensor_peak: float, vector_peak: float, *,
               serial_host: bool = False) -> CardRates:
    """What one card achieves for one precision: the ``CardRates`` every op of a step is priced at.

    Args:
        spec: the card (``GpuSpec``; per device for a multi-die package).
        precision: the workload's precision.
        eff: its efficiencies (defaults or calibrated; ``eff.clock`` the sustained fraction of the boost clock).
        tensor_peak, vector_peak: dense tensor and vector peaks for ``precision`` (FLOP/s).
        serial_host: the card is the host's CPU (validate's pseudo-card): no launches, layouts or alignment.
    """
    half = HALF_DIM_REF * math.sqrt((spec.sm_count or REF_SMS) / REF_SMS)
    # GEMMs and convolutions run at the clock held at the power cap (eff.clock); kernels that draw far less
    # (elementwise, norms, index-bound, layout) at power.low_draw_clock; memory bandwidth at neither (its clock holds)
    low = low_draw_clock(eff.clock)
    tensor_held, vector_held = tensor_peak * eff.clock, vector_peak * eff.clock
    conv_peak, conv_eff = tensor_held, eff.conv
    conv_tensor_cores = precision not in ("fp32", "tf32") or bool(spec.tf32_tflops)
    if precision == "fp32":  # the family's conv library decides the math (TF32 under cuDNN's default, ...)
        conv_peak, conv_eff, conv_tensor_cores = fp32_conv_rate(spec, eff, vector_held)
    # SM cycles per second at the boost clock (the fused-attention kernels' exponentials, fitted so), and at the
    # low-draw clock for index-bound, batch-norm and layout kernels (STRIDED_ / BN_NCHW_ / LAYOUT_TRANSPOSE_ELEMENTS_
    # PER_SM_CYCLE were fitted per boost cycle on the H200, where that clock is boost)
    boost_cycles = (spec.sm_count or 0) * (spec.boost_clock_mhz or 0) * 1e6
    low_cycles = boost_cycles * low
    bw = spec.memory_bandwidth_bytes_s * eff.memory
    transpose_s = low_cycles * LAYOUT_TRANSPOSE_ELEMENTS_PER_SM_CYCLE * compute_bytes(precision)
    fused = precision not in ("fp32", "tf32") and eff.fused_attention  # 16-bit fused attention kernels
    used = matmul_rate(spec, precision)
    # tensor-core matmuls on a card without matrix units (or 16-bit ones computed on its FP32 units) run cuBLAS's
    # CUDA-core kernels: their efficiency, their tiles, any alignment
    tensor_cores = used is not None and tensor_core_gemms(spec, precision, used[1])
    conv_tiles = conv_tensor_cores and has_tensor_cores(spec)  # convolutions on tensor-core tiles (else SIMT ones)
    rates = CardRates(tensor_flops=tensor_held * (eff.matmul if tensor_cores else eff.vector_matmul),
                      conv_flops=conv_peak * conv_eff,
                      vector_flops=vector_peak * low * eff.vector, matmul_vector_flops=vector_held * eff.vector_matmul,
                      memory_bytes_s=bw, launch_s=eff.launch_overhead_s,
                      half_dim=half, sm_count=spec.sm_count or 0, tensor_cores=tensor_cores,
                      fp32_lanes=fp32_lanes(spec),
                      # the profile's unaligned_fraction is a fraction of the boost-clock peak: no clock factor
                      unaligned_flops=tensor_peak * unaligned_fraction(eff.unaligned) if tensor_cores else 0.0,
                      unaligned_conv_flops=conv_peak / (eff.clock or 1.0) * unaligned_fraction(eff.unaligned)
                      if conv_tiles else 0.0,
                      conv_simt=not conv_tiles,
                      bn_elements_s=low_cycles * BN_NCHW_ELEMENTS_PER_SM_CYCLE,
                      layout_transposes=eff.layout_transposes and conv_tensor_cores,
                      transpose_bytes_s=min(bw, transpose_s) if transpose_s else bw, step_latency_s=RECURRENT_STEP_S,
                      norm_bytes_s=bw * eff.norm_memory,
                      strided_elements_s=low_cycles * STRIDED_ELEMENTS_PER_SM_CYCLE,
                      winograd_factor=1.0 if conv_tensor_cores or spec.vendor != "nvidia"
                      else WINOGRAD_MULTIPLY_REDUCTION,
                      attention_backward_rate=ATTENTION_BACKWARD_RATE if fused else 1.0,
                      exponentials_s=boost_cycles * SFU_EXPONENTIALS_PER_SM_CYCLE if fused else 0.0,
                      optimizer_bytes_s=bw * foreach_bandwidth_fraction(precision),
                      attention_backward_floor=eff.attention_backward_floor)
    if serial_host:
        rates = replace(rates, launch_s=0.0, bn_elements_s=0.0, layout_transposes=False, unaligned_flops=0.0,
                        unaligned_conv_flops=0.0, step_latency_s=0.0, strided_elements_s=0.0, winograd_factor=1.0,
                        attention_backward_rate=1.0, exponentials_s=0.0, optimizer_bytes_s=0.0,
                        attention_backward_floor=(0.0, 0.0))
    return rates


@dataclass(frozen=True, slots=True)
class OpsTime:
    """Where the seconds of a list of ops go: per phase, roofline side, and breakdown group."""

    phases: list[float]
    compute_s: float
    memory_s: float
    launch_s: float
    by_group: list[float]
    per_op: list[float] = field(default_factory=list)  # each op's seconds without its launch gaps, in order


def ops_time_detail(ops: Sequence[PreparedOp], rates: CardRates) -> OpsTime:
    """Per-phase and per-group seconds, and the compute-bound, memory-bound and launch shares of the total.

    Each op is priced by the function its mechanism registered for its pricing kind (``pricing.PRICING``: GEMM
    tiles, waves and alignment in ``gemm``, fused attention in ``attention``, ...); its launch gaps are added here
    (views and metadata ops launch no kernel), and its time is booked to the roofline side that is larger.
    """
    phases = [0.0] * len(PHASES)
    groups = [0.0] * len(GROUPS)
    compute_s = memory_s = launch_s = 0.0
    launch = rates.launch_s
    per_op: list[float] = []
    for op in ops:
        tc, tm, t = PRICING[op.pricing](op, rates)
        lt = op.calls * launch if (op.flops or op.bytes) else 0.0
        if tc >= tm:
            compute_s += tc
        else:
            memory_s += tm
        phases[op.phase] += t + lt
        groups[op.group] += t + lt
        launch_s += lt
        per_op.append(t)
    return OpsTime(phases, compute_s, memory_s, launch_s, groups, per_op)


def ops_time(ops: Sequence[PreparedOp], rates: CardRates) -> tuple[list[float], float, float, float]:
    """Per-phase seconds, and the compute-bound, memory-bound and launch shares of the total."""
    d = ops_time_detail(ops, rates)
    return d.phases, d.compute_s, d.memory_s, d.launch_s


#: What makes each op class faster, for ``estimate --breakdown`` and the dashboard.
CLASS_ADVICE: dict[str, str] = {
    "gemm": "16-bit or fp8 tensor cores, dimensions padded to multiples of 8 (16 bytes), a card with more "
            "tensor FLOP/s",
    "attention": "a fused kernel (SDPA flash / memory-efficient, FlashAttention)",
    "conv": "channels_last (no NCHW<->NHWC transposes), amp (16-bit tensor cores)",
    "norm": "channels_last batch norm, fused norm kernels (torch.compile, apex)",
    "elementwise": "fusion (torch.compile), fewer dtype casts, a card with more memory bandwidth",
    "optimizer": "a fused optimizer (torch.optim.AdamW(fused=True)), fewer parameter tensors",
    "communication": "overlap with backward (bucketed DDP), a faster interconnect (NVLink), fewer cards",
    "other": "-",
    "host (exposed)": "a larger batch, torch.compile with CUDA graphs (mode='reduce-overhead'), a graph runtime",
}


def class_advice(ops: Sequence[PreparedOp], rates: CardRates, precision: str, eff: Any, *, tensor_cores_16: bool,
                 channels_last: bool) -> dict[str, str]:
    """``CLASS_ADVICE`` for one estimate: only the changes that apply to this card and workload.

    ``tensor_cores_16``: the card has 16-bit tensor cores.  16-bit math is offered to fp32/tf32 workloads on such
    cards; channels_last where cuDNN transposes this step's NCHW convolutions; padding where a tensor-core GEMM is
    off the 16-byte grid; for attention already fused (``OpCost.tile_flops``), 16-bit kernels where the card has
    them (its profile's ``fused_attention``), else what its tiles and exponentials cost (``ATTENTION_SOURCE``).
    """
    advice = dict(CLASS_ADVICE)
    wide = precision in ("fp32", "tf32")
    amp = ["amp / bf16 (16-bit tensor cores)"] if wide and tensor_cores_16 else []
    faster = "a card with more tensor FLOP/s" if tensor_cores_16 else "a card with tensor cores"
    unaligned = bool(rates.unaligned_flops) and any(op.plan is not None and len(op.plan) > 2 for op in ops)
    padded = ["dimensions padded to multiples of 8 (16 bytes)"] if unaligned else []
    advice["gemm"] = ", ".join([*amp, *padded, faster])
    transposes = rates.layout_transposes and not channels_last and any(op.transpose_bytes for op in ops)
    advice["conv"] = ", ".join([*(["channels_last (no NCHW<->NHWC transposes)"] if transposes else []), *amp,
                                faster])
    advice["norm"] = ", ".join([*(["channels_last batch norm"] if any(op.bn_elements for op in ops) else []),
                                "fused norm kernels (torch.compile, apex)"])
    if any(op.tiles for op in ops):  # a fused kernel already
        if rates.exponentials_s:
            advice["attention"] = ("a larger head dim (fewer softmax exponentials per FLOP), sequence lengths that "
                                   "fill 128-row tiles")
        elif wide and eff.fused_attention:
            advice["attention"] = "amp / bf16 (FlashAttention / cuDNN fused kernels)"
        elif eff.attention_upgrade:
            advice["attention"] = eff.attention_upgrade
        else:
            advice["attention"] = faster
    return advice


def class_breakdown(by_class: Mapping[str, float], step_s: float,
                    advice: Mapping[str, str] | None = None) -> list[tuple[str, float, float, str]]:
    """(class, seconds, share of the step, what would help) for the classes that take time, largest first.

    ``advice``: the estimate's own (``class_advice``; ``time.class_advice``), else ``CLASS_ADVICE``.
    """
    table = advice or CLASS_ADVICE
    rows = [(name, sec, sec / step_s if step_s else 0.0, table.get(name, CLASS_ADVICE.get(name, "-")))
            for name, sec in by_class.items() if sec > 0]
    return sorted(rows, key=lambda r: -r[1])


@dataclass(frozen=True, slots=True)
class TimeEstimate:
    """Time of one optimizer step (train) or one request batch (infer).

    Attributes:
        step_s: seconds per step (train: ``grad_accum`` micro-steps + optimizer + exposed communication;
            infer: forward / prefill, plus ``gen_len`` decode steps for causal LMs).
        samples_per_s: global samples per second (GPU side; see ``input_bound``).
        tokens_per_s: train / prefill-only: tokens processed per second; generation: generated tokens
            per second; ``None`` for non-token models.
        bound: ``compute`` or ``memory`` (which roofline side most op time sits on).
        limiter: what limits the step most: compute, memory, launch, communication, host (eager dispatch:
            the GPU waits for the Python/dispatcher side) or input.
        mfu: model FLOPs utilization (counts recomputation when checkpointing, so closer to HFU).
        phases_s: per-phase seconds of one step (forward, backward, optimizer, prefill, decode, communication).
        comm_s: exposed communication per step; comm_total_s: all of it (partly overlapped).
        host_s: host dispatch time beyond the GPU's per step (``runtime`` eager); runtime: eager or graph.
        by_class_s: seconds per op class (``GROUPS``: GEMM, attention, conv, norm, elementwise, optimizer,
            communication, other) plus ``host (exposed)``; GPU-side classes include their launch gaps and sum,
            with the exposed host time, to about ``step_s`` (the per-phase host floor replaces, not adds).
        class_advice: per op class, what would make it faster on this card and workload (``class_advice``).
        prefill_s, decode_step_s, decode_tokens_per_s: causal-LM inference.
        time_to_train_s: ``dataset_samples x epochs`` or ``total_tokens`` at this rate.
        input_bound, input_advice, h2d_s, loader_samples_per_s: the input pipeline check.
        effective_samples_per_s: what the job really runs at: the GPUs' rate (host dispatch included),
            capped by the data loader and host->device copies (``limiter`` names the cap); ``time_to_train_s``
            uses it.  ``None`` on estimates built before it existed: then ``samples_per_s``.
    """

    step_s: float
    samples_per_s: float
    tokens_per_s: float | None
    bound: str
    limiter: str
    mfu: float | None
    phases_s: Mapping[str, float] = field(default_factory=dict)
    compute_bound_s: float = 0.0
    memory_bound_s: float = 0.0
    launch_s: float = 0.0
    comm_s: float = 0.0
    comm_total_s: float = 0.0
    prefill_s: float | None = None
    decode_step_s: float | None = None
    decode_tokens_per_s: float | None = None
    time_to_train_s: float | None = None
    input_bound: bool = False
    input_advice: str | None = None
    h2d_s: float = 0.0
    loader_samples_per_s: float | None = None
    host_s: float = 0.0
    runtime: str = "eager"
    by_class_s: Mapping[str, float] = field(default_factory=dict)
    effective_samples_per_s: float | None = None
    class_advice: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (DESIGN.md's ``time`` keys first)."""
        return {"step_s": self.step_s, "samples_per_s": self.samples_per_s, "tokens_per_s": self.tokens_per_s,
                "bound": self.bound, "limiter": self.limiter, "mfu": self.mfu, "phases_s": dict(self.phases_s),
                "compute_bound_s": self.compute_bound_s, "memory_bound_s": self.memory_bound_s,
                "launch_s": self.launch_s, "comm_s": self.comm_s, "comm_total_s": self.comm_total_s,
                "prefill_s": self.prefill_s, "decode_step_s": self.decode_step_s,
                "decode_tokens_per_s": self.decode_tokens_per_s, "time_to_train_s": self.time_to_train_s,
                "input_bound": self.input_bound, "input_advice": self.input_advice, "h2d_s": self.h2d_s,
                "loader_samples_per_s": self.loader_samples_per_s, "host_s": self.host_s, "runtime": self.runtime,
                "by_class": dict(self.by_class_s), "effective_samples_per_s": self.effective_samples_per_s,
                "class_advice": dict(self.class_advice)}

    def to_frame(self) -> Any:
        """One row per phase: seconds and share of the step."""
        import pandas as pd

        rows = [{"phase": k, "seconds": v, "share": v / self.step_s if self.step_s else None}
                for k, v in self.phases_s.items()]
        return pd.DataFrame(rows)
