"""Step time: a roofline per op, with shape-aware efficiencies, launch overhead and host dispatch.

For every ``OpCost``: max(flops / (peak x compute efficiency), bytes / (bandwidth x memory
efficiency)) + count x launch overhead.  In PyTorch eager the host dispatches every op and the GPU
runs behind it asynchronously, so a phase takes max(GPU time, dispatched ops x host time per op)
(``host_floor``; per phase, since the host's lead carries within a phase of repeated layers); on a
CPU "card" the same cores dispatch and compute, so the host time adds instead.  Tensor-core ops
(``tensor_core`` matmul / conv / attention) use the peak of the workload's precision; everything
else the vector peak (FP32, or the 16-bit vector rate where the card lists one).  The compute
efficiency falls for small ops (``efficiency.compute_efficiency``).  Pure arithmetic over tuples
prepared once per workload.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from advisor.errors import EstimateError
from advisor.estimate.efficiency import HOST_BACKWARD_FRACTION
from advisor.workload.base import OpCost

# Op classes (ints keep the per-card loop cheap).
TENSOR, CONV, MATMUL_VECTOR, VECTOR = 0, 1, 2, 3
PHASES: tuple[str, ...] = ("forward", "backward", "optimizer", "prefill", "decode")
#: ``eager``: PyTorch eager (host dispatch can bound a phase); ``graph``: CUDA graphs / compiled runtimes.
RUNTIMES: tuple[str, ...] = ("eager", "graph")


def check_runtime(runtime: Any) -> None:
    """Refuse a runtime name outside ``RUNTIMES``, naming the accepted ones."""
    if runtime not in RUNTIMES:
        raise EstimateError(f"unknown runtime {runtime!r}", hint=f"accepted: {', '.join(RUNTIMES)}")

#: Prepared op: (flops, bytes, count, class, min_dim or 0, phase index).
PreparedOp = tuple[float, float, int, int, int, int]


def op_class(op: OpCost) -> int:
    """Which peak and efficiency an op runs at."""
    if op.kind in ("matmul", "attention", "conv", "recurrent"):
        if op.tensor_core:
            return CONV if op.kind == "conv" else TENSOR
        return MATMUL_VECTOR
    return VECTOR


def prepare_ops(ops: Sequence[OpCost], tp: int = 1, runtime: str = "eager") -> tuple[PreparedOp, ...]:
    """Ops as plain tuples; under tensor parallel ``tp`` each GPU runs 1/tp of all but norms.

    Megatron without sequence parallelism keeps layer norms (and dropout) replicated; launches
    stay per GPU.  Ops that only one runtime runs (``OpCost.runtime``) are left out for the others.
    """
    out = []
    for op in ops:
        if op.runtime is not None and op.runtime != runtime:
            continue
        div = 1 if tp <= 1 or op.kind == "norm" else tp
        phase = PHASES.index(op.phase) if op.phase in PHASES else 0
        out.append((op.flops / div, op.bytes / div, op.count, op_class(op), op.min_dim or 0, phase))
    return tuple(out)


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


def ops_time(ops: Sequence[PreparedOp], rates: CardRates) -> tuple[list[float], float, float, float]:
    """Per-phase seconds, and the compute-bound, memory-bound and launch shares of the total."""
    phases = [0.0] * len(PHASES)
    compute_s = memory_s = launch_s = 0.0
    peaks = (rates.tensor_flops, rates.conv_flops, rates.matmul_vector_flops, rates.vector_flops)
    bw, launch, h2 = rates.memory_bytes_s, rates.launch_s, rates.half_dim
    for flops, nbytes, count, cls, dim, phase in ops:
        peak = peaks[cls]
        if dim and cls != VECTOR:
            peak = max(peak * dim / (dim + h2), peak * 0.02)
        tc = flops / peak
        tm = nbytes / bw
        lt = count * launch if (flops or nbytes) else 0.0  # views and metadata ops launch no kernel
        if tc >= tm:
            compute_s += tc
            phases[phase] += tc + lt
        else:
            memory_s += tm
            phases[phase] += tm + lt
        launch_s += lt
    return phases, compute_s, memory_s, launch_s


def host_floor(phases: Sequence[float], ops: Sequence[PreparedOp], eager_ops: Mapping[str, int],
               eff: Any, serial: bool = False) -> tuple[list[float], float]:
    """Per-phase seconds with the eager host's dispatch time applied, and the host time exposed.

    Dispatched ops per phase come from ``eager_ops`` (the analytic builders' measured counts) or, for a
    phase it lacks, the ops' own counts (the tracer sees every dispatched op).  ``eff.host_op_s`` per
    forward op, ``HOST_BACKWARD_FRACTION`` of it per backward op.  ``serial``: the host also computes.
    """
    counts = [0] * len(PHASES)
    for _f, _b, count, _c, _d, phase in ops:
        counts[phase] += count
    out = list(phases)
    exposed = 0.0
    for i, name in enumerate(PHASES):
        n = eager_ops.get(name, counts[i]) if counts[i] else 0  # only phases these ops run in
        if not n:
            continue
        per = eff.host_op_s * (HOST_BACKWARD_FRACTION if name == "backward" else 1.0)
        host = n * per
        if serial:
            out[i] += host
            exposed += host
        elif host > out[i]:
            exposed += host - out[i]
            out[i] = host
    return out, exposed


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
    effective_samples_per_s: float | None = None

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
                "effective_samples_per_s": self.effective_samples_per_s}

    def to_frame(self) -> Any:
        """One row per phase: seconds and share of the step."""
        import pandas as pd

        rows = [{"phase": k, "seconds": v, "share": v / self.step_s if self.step_s else None}
                for k, v in self.phases_s.items()]
        return pd.DataFrame(rows)
