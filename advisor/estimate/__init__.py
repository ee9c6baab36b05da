"""Estimates: per-GPU peak memory and step time of a workload on a card (and on several).

``estimate_workload(workload, spec, ...)`` is the estimator; the public ``advisor.estimate(model, gpu, ...)``
(``advisor.api``) builds the workload, looks the card up, resolves ``calibration="auto"`` at the edge and
calls it, and ``recommend`` calls it in a loop over cards and counts: everything that does not depend on
the card is prepared once per workload (and cached), so each card costs plain arithmetic.  Nothing here
imports torch or reads the history store: calibration comes in as data.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advisor.catalog import GpuSpec
from advisor.errors import EstimateError
from advisor.estimate.calibrate import StoredProbes, apply_efficiencies, load_efficiencies, uncalibrated_note
from advisor.estimate.efficiency import (
    CONTEXT_SOURCE,
    HOST_BACKWARD_FRACTION,
    HOST_SOURCE,
    defaults_for,
)
from advisor.estimate.gemm import UNALIGNED_SOURCE, unaligned_gemms
from advisor.estimate.memory import (
    ALLOCATOR_SUMMARY,
    KERNEL_MODULES_INFER_BYTES,
    KERNEL_MODULES_TRAIN_BYTES,
    RESERVE_FRACTION,
    MemoryEstimate,
    MemoryParts,
    ceil_div,
    grad_bytes_per_param,
    memory_on_card,
    memory_parts,
)
from advisor.estimate.parallel import (
    CommEstimate,
    ParallelPlan,
    allgather_s,
    bus_bandwidth_bytes_s,
    data_parallel_comm,
    peer_link,
    resolve_plan,
    tensor_parallel_comm,
)
from advisor.estimate.power import sustained_clock
from advisor.estimate.time import (
    GROUPS,
    LAYOUT_SOURCE,
    PHASES,
    PreparedOp,
    TimeEstimate,
    card_rates,
    check_runtime,
    host_floor,
    ops_time_detail,
    prepare_ops,
)
from advisor.precision import activation_bytes
from advisor.workload.base import MODES, OPTIMIZERS, PRECISIONS, Workload
from advisor.workload.eager import SOURCE as EAGER_SOURCE
from advisor.workload.transformer import compute_bytes

__all__ = ["Estimate", "MemoryEstimate", "StoredProbes", "TimeEstimate", "build_workload", "estimate_workload",
           "matmul_rate", "prepare_workload"]

#: Image presets: a CPU JPEG decode + RandomResizedCrop rate per core (Pillow, torchvision ImageFolder;
#: NVIDIA DALI docs and the PyTorch ImageNet example report ~100-200 images/s/core) x cores per GPU.
DECODE_IMAGES_PER_S_PER_CORE = 150.0
HOST_CORES_PER_GPU = 8


class PreparedWorkload:
    """A workload plus what estimates need from it, cached per micro-batch and plan (card-independent)."""

    def __init__(self, workload: Workload) -> None:
        self.workload = workload
        self._micro: dict[int, Workload] = {workload.batch_size: workload}
        self._parts: dict[tuple[int, ParallelPlan], MemoryParts] = {}
        self._ops: dict[tuple[int, int, bool, str, bool], tuple[PreparedOp, ...]] = {}

    def micro(self, batch: int) -> Workload:
        """The workload at per-GPU micro-batch ``batch``."""
        w = self._micro.get(batch)
        if w is None:
            try:
                w = self.workload.with_batch_size(batch)
            except NotImplementedError as exc:
                raise EstimateError(str(exc), hint="estimate it on one GPU, or give a rebuildable workload") from exc
            self._micro[batch] = w
        return w

    def parts(self, batch: int, plan: ParallelPlan) -> MemoryParts:
        """Memory parts at micro-batch ``batch`` under ``plan``."""
        key = (batch, plan)
        p = self._parts.get(key)
        if p is None:
            p = self._parts[key] = memory_parts(self.micro(batch), plan)
        return p

    def ops(self, batch: int, tp: int, decode: bool = False, runtime: str = "eager",
            channels_last: bool = False) -> tuple[PreparedOp, ...]:
        """Prepared op tuples at micro-batch ``batch``, per GPU under tensor parallel ``tp``, for ``runtime``
        (a CNN's convolutions and batch norms on NCHW tensors unless ``channels_last``)."""
        key = (batch, tp, decode, runtime, channels_last)
        o = self._ops.get(key)
        if o is None:
            w = self.micro(batch)
            o = self._ops[key] = prepare_ops(w.decode_ops if decode else w.ops, tp, runtime,
                                             align_elems=16 // compute_bytes(w.precision),
                                             nchw=is_nchw_cnn(w) and not channels_last,
                                             training_norms=w.mode == "train")
        return o


_PREPARED: OrderedDict[int, PreparedWorkload] = OrderedDict()


def is_nchw_cnn(w: Workload) -> bool:
    """Whether a workload's convolutions run through cuDNN on PyTorch's default NCHW layout (the vision presets)."""
    return w.source == "preset" and w.family == "cnn"


def prepare_workload(workload: Workload | PreparedWorkload) -> PreparedWorkload:
    """The cached ``PreparedWorkload`` of a workload (kept for the last 16 workloads)."""
    if isinstance(workload, PreparedWorkload):
        return workload
    hit = _PREPARED.get(id(workload))
    if hit is not None and hit.workload is workload:
        _PREPARED.move_to_end(id(workload))
        return hit
    prepared = PreparedWorkload(workload)
    _PREPARED[id(workload)] = prepared
    while len(_PREPARED) > 16:
        _PREPARED.popitem(last=False)
    return prepared


@dataclass(frozen=True, slots=True)
class Estimate:
    """Memory and time of a workload on ``num_gpus`` cards of one kind (see DESIGN.md "Estimate JSON")."""

    model: str
    gpu_id: str
    gpu_name: str
    num_gpus: int
    parallelism: str
    workload: Workload
    batch_size: int
    micro_batch_per_gpu: int
    memory: MemoryEstimate
    time: TimeEstimate
    flops_per_step: float
    calibrated: bool
    assumptions: tuple[str, ...] = ()
    calibrated_figures: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """Exactly DESIGN.md's Estimate JSON, plus extra keys."""
        w = self.workload
        return {
            "model": self.model,
            "gpu": {"id": self.gpu_id, "name": self.gpu_name},
            "num_gpus": self.num_gpus,
            "workload": {"params": w.params, "trainable_params": w.trainable_params if w.mode == "train" else 0,
                         "batch_size": self.batch_size, "seq_len": w.seq_len, "image_size": w.image_size,
                         "precision": w.precision,
                         "optimizer": w.optimizer if w.mode == "train" else None, "mode": w.mode,
                         "micro_batch_per_gpu": self.micro_batch_per_gpu, "grad_accum": w.grad_accum,
                         "gen_len": w.gen_len, "family": w.family},
            "memory": self.memory.to_dict(),
            "time": self.time.to_dict(),
            "flops_per_step": self.flops_per_step,
            "calibrated": self.calibrated,
            "assumptions": list(self.assumptions),
            "parallelism": self.parallelism,
            "calibrated_figures": list(self.calibrated_figures),
        }

    def to_frame(self) -> Any:
        """The memory breakdown as a table (bytes and GiB per category)."""
        return self.memory.to_frame()


#: Precisions that run on a card without an fp16 tensor rate, as 16-bit storage with fp32 math.
HALF_ON_FP32_UNITS = ("fp16", "amp-fp16")


def matmul_rate(spec: GpuSpec, precision: str) -> tuple[float, str] | None:
    """The dense tensor rate (FLOP/s) matmuls at ``precision`` run at on the card, and whose rate it is;
    ``None`` when the card cannot run them.

    int4 is weight-only in practice (GPTQ, AWQ, bitsandbytes nf4, llama.cpp Q4): weights are dequantized
    and the matmuls run at the 16-bit rate; int8 keeps the card's int8 rate (W8A8: TensorRT, SmoothQuant)
    and falls back to weight-only on a card without one.
    """
    own = None if precision == "int4" else spec.peak_flops(precision)
    if own is not None:
        return own, precision
    if precision in HALF_ON_FP32_UNITS:
        # No fp16 tensor rate (Pascal GeForce, ...): PyTorch still runs fp16 / autocast fp16 there, cuBLAS
        # computing the half GEMMs in fp32 (16-bit storage, fp32 math): the FP32 rate, or the card's fp16
        # vector rate where that is faster (GP100: 2x FP32).
        vector16 = (spec.fp16_vector_tflops or 0.0) * 1e12
        return (vector16, "fp16-vector") if vector16 > spec.fp32_tflops * 1e12 else (spec.fp32_tflops * 1e12, "fp32")
    if precision in ("int8", "int4"):
        for alt in ("fp16", "bf16"):
            alt_peak = spec.peak_flops(alt)
            if alt_peak is not None:
                return alt_peak, alt
    return None


def _peaks(spec: GpuSpec, precision: str) -> tuple[float, float, str | None]:
    """(tensor peak, vector peak) in FLOP/s for ``precision``, and a fallback note if one was taken."""
    rate = matmul_rate(spec, precision)
    if rate is None:
        runs = [*spec.supported_precisions, *(p for p in HALF_ON_FP32_UNITS if p not in spec.supported_precisions)]
        hint = f"{spec.name} supports: {', '.join(runs)}"
        if "bf16" in precision and spec.vendor == "nvidia":
            hint += (" (PyTorch lets autocast bf16 start on pre-Ampere NVIDIA cards only by emulation: "
                     "torch.cuda.is_bf16_supported(including_emulation=True) creates a bf16 tensor, but the card "
                     "has no bf16 math units and the catalog no bf16 rate to estimate; use amp-fp16 or fp32)")
        raise EstimateError(f"{spec.name} does not support precision {precision!r}", hint=hint)
    peak, used = rate
    note = None
    if precision in HALF_ON_FP32_UNITS and used != precision:
        note = (f"{spec.name} has no fp16 tensor rate: {precision} runs with 16-bit storage and fp32 math "
                f"(cuBLAS computes half GEMMs in fp32; PyTorch autocast/half run as usual), matmuls at the "
                f"{'fp16 vector' if used == 'fp16-vector' else 'FP32'} rate ({peak / 1e12:.1f} TFLOP/s)")
    elif used != precision:
        why = (f"{spec.name} has no {precision} tensor rate" if spec.peak_flops(precision) is None
               else f"{precision} kernels dequantize to 16 bits")
        note = (f"{why}: modelled as weight-only {precision} quantization (weights dequantized, matmuls at "
                f"the {used} rate)")
    vector = spec.fp32_tflops * 1e12
    if precision in ("fp16", "bf16", "amp-fp16", "amp-bf16") and spec.fp16_vector_tflops:
        vector = max(vector, spec.fp16_vector_tflops * 1e12)
    return peak, vector, note


def _sum_phases(phases: list[float], names: tuple[str, ...]) -> float:
    return sum(phases[PHASES.index(n)] for n in names)


def estimate_workload(workload: Workload | PreparedWorkload, spec: GpuSpec, *, num_gpus: int = 1,
                      parallelism: str | None = None, calibration: Any = None, batch_size: int | None = None,
                      gen_len: int | None = None, loader_samples_per_s: float | None = None,
                      dataset_samples: int | None = None, epochs: float = 1, total_tokens: float | None = None,
                      model_name: str | None = None, runtime: str = "eager", channels_last: bool = False) -> Estimate:
    """Estimate a built workload on ``num_gpus`` cards ``spec`` (fast: ``recommend`` calls it in a loop).

    Args:
        workload: built at the GLOBAL batch (or a ``PreparedWorkload`` of one).
        spec: the card.
        num_gpus: cards in all.
        parallelism: ``ddp``, ``zero1``, ``zero2``, ``zero3``, ``fsdp``, ``tp``; ``None``: ddp for several.
        calibration: ``None`` (defaults), a ``ProbeResult``, a probe JSON path, an efficiencies mapping or
            ``StoredProbes`` (``"auto"`` as resolved by ``advisor.calibration.resolve_calibration``).
        batch_size: global batch; default the workload's.
        gen_len: tokens to generate (causal-LM infer); default the workload's.
        loader_samples_per_s: what the data loader delivers (whole host), for the input check.
        dataset_samples, epochs, total_tokens: for ``time_to_train_s``.
        model_name: label for the result (default the workload's name).
        runtime: ``eager`` (PyTorch eager: a phase takes at least its dispatched ops x host time per op,
            the GPU idling while the host falls behind) or ``graph`` (CUDA graphs, torch.compile with
            reduce-overhead, TensorRT(-LLM), vLLM, llama.cpp: no per-op host floor).
        channels_last: a CNN run in ``torch.channels_last`` (NHWC): cuDNN needs no layout transposes and runs
            its NHWC batch norm (default: PyTorch's NCHW).

    Raises:
        EstimateError: unsupported precision, bad parallelism or count, bad calibration file.
    """
    check_runtime(runtime)
    prep = prepare_workload(workload)
    w0 = prep.workload
    arch = dict(w0.arch or {})
    plan = resolve_plan(parallelism, num_gpus, num_heads=arch.get("num_heads"))
    global_batch = batch_size if batch_size is not None else w0.batch_size
    if isinstance(global_batch, bool) or not isinstance(global_batch, int) or global_batch < 1:
        raise EstimateError(f"batch_size must be a whole number >= 1, got {global_batch!r}")
    micro = ceil_div(global_batch, plan.dp)
    w = prep.micro(micro)
    package_note = None
    if spec.devices_per_package > 1:
        package_note = (f"one GPU is one of the {spec.devices_per_package} devices of the {spec.name} package (what "
                        f"ROCm/PyTorch enumerate): {spec.memory_gb / spec.devices_per_package:.0f} GB and 1/"
                        f"{spec.devices_per_package} of the package's rates each; num_gpus counts devices")
        spec = spec.per_device()
    tensor_peak, vector_peak, fallback = _peaks(spec, w.precision)

    clock = sustained_clock(spec)
    eff0 = defaults_for(spec.architecture, spec.segment).replace(clock=clock.fraction)
    measured = load_efficiencies(calibration, spec.id)
    eff, changed = apply_efficiencies(eff0, measured, w.precision)
    calibrated = bool(changed)
    clock_note = clock.note if eff.clock == clock.fraction else (
        f"sustained clock {eff.clock:.0%} of the maximum SM clock, from the probe's NVML clock samples under its "
        f"largest {w.precision} GEMM (replaces the power model: {clock.note})")

    # --- memory ---
    parts = prep.parts(micro, plan)
    mem = memory_on_card(parts, spec.memory_bytes, eff, plan.dp)

    # --- time ---
    serial_host = spec.architecture.strip().lower() == "cpu"  # the host runs the ops too: no overlap
    rates = card_rates(spec, w.precision, eff, tensor_peak, vector_peak, serial_host=serial_host)
    step_ops = prep.ops(micro, plan.tp, runtime=runtime, channels_last=channels_last)
    detail = ops_time_detail(step_ops, rates)
    phases, compute_s, memory_s, launch_s = detail.phases, detail.compute_s, detail.memory_s, detail.launch_s
    by_group = dict(zip(GROUPS, detail.by_group, strict=True))
    host_exposed = 0.0
    if runtime == "eager":
        phases, host_exposed = host_floor(phases, step_ops, w.eager_ops, eff, serial_host)
    k = w.grad_accum
    train = w.mode == "train"
    ic = spec.interconnect
    peer_gbs, has_fabric, link = peer_link(ic, plan.num_gpus)
    busbw = bus_bandwidth_bytes_s(peer_gbs, has_fabric, plan.num_gpus)
    hidden = arch.get("hidden_size")
    layers = arch.get("num_layers")
    act_elem = activation_bytes(w.precision)
    seq = w.seq_len or 1
    notes: list[str] = []
    comm = CommEstimate(0.0, 0.0, "")
    prefill_s = decode_step_s = decode_tps = None
    phase_out: dict[str, float] = {}
    if train:
        fwd = _sum_phases(phases, ("forward", "prefill"))
        bwd = _sum_phases(phases, ("backward",))
        opt = _sum_phases(phases, ("optimizer",)) / (plan.dp if plan.zero_stage >= 1 else 1)
        if plan.strategy == "tp":
            passes = 3 if w.gradient_checkpointing else 2
            comm = tensor_parallel_comm(plan, num_layers=layers or 1, passes=passes, busbw_bytes_s=busbw,
                                        activation_bytes=micro * seq * (hidden or 0) * act_elem)
            comm = CommEstimate(comm.total_s * k, comm.exposed_s * k, comm.note)
        elif plan.dp > 1:
            grad_b = w.trainable_params * (2.0 if plan.zero_stage and w.precision.startswith("amp")
                                           else grad_bytes_per_param(w.precision))
            comm = data_parallel_comm(plan, grad_bytes=grad_b, param_bytes_16=w.params * 2.0,
                                      overlap_s=bwd + (fwd if plan.zero_stage >= 3 else 0.0), busbw_bytes_s=busbw)
        step_s = k * (fwd + bwd) + opt + comm.exposed_s
        phase_out = {"forward": k * fwd, "backward": k * bwd, "optimizer": opt}
        samples = global_batch * k
    else:
        prefill_s = _sum_phases(phases, ("forward", "prefill", "backward", "optimizer"))
        if plan.strategy == "tp":
            comm = tensor_parallel_comm(plan, num_layers=layers or 1, passes=1, busbw_bytes_s=busbw,
                                        activation_bytes=micro * seq * (hidden or 0) * act_elem)
            prefill_s += comm.exposed_s
        gather_s = 0.0
        if plan.zero_stage >= 3 and plan.dp > 1:
            # sharded weights are all-gathered for every forward pass (prefill and each decode step)
            gather_s = allgather_s(w.params * float(act_elem), plan.dp, busbw)
            comm = CommEstimate(gather_s, gather_s, f"{plan.strategy} inference: all weights all-gathered for "
                                                    "every forward pass (prefill and each decode step)")
            prefill_s += gather_s
        step_s = prefill_s
        phase_out = {"prefill" if w.decode_ops else "forward": prefill_s}
        gen = gen_len if gen_len is not None else (w.gen_len or 0)
        if w.decode_ops and gen:
            dops = prep.ops(micro, plan.tp, decode=True, runtime=runtime)
            ddetail = ops_time_detail(dops, rates)
            dphases, dc, dm, dl = ddetail.phases, ddetail.compute_s, ddetail.memory_s, ddetail.launch_s
            for name, sec in zip(GROUPS, ddetail.by_group, strict=True):
                by_group[name] += gen * sec
            if runtime == "eager":
                dphases, dhost = host_floor(dphases, dops, w.eager_ops, eff, serial_host)
                host_exposed += gen * dhost
            decode_step_s = sum(dphases) + gather_s
            if gather_s:
                comm = CommEstimate(comm.total_s + gen * gather_s, comm.exposed_s + gen * gather_s, comm.note)
            if plan.strategy == "tp":
                dcomm = tensor_parallel_comm(plan, num_layers=layers or 1, passes=1, busbw_bytes_s=busbw,
                                             activation_bytes=micro * (hidden or 0) * act_elem)
                decode_step_s += dcomm.exposed_s
                comm = CommEstimate(comm.total_s + gen * dcomm.total_s, comm.exposed_s + gen * dcomm.exposed_s,
                                    comm.note)
            compute_s, memory_s, launch_s = compute_s + gen * dc, memory_s + gen * dm, launch_s + gen * dl
            step_s = prefill_s + gen * decode_step_s
            decode_tps = global_batch / decode_step_s if decode_step_s > 0 else None
            phase_out["decode"] = gen * decode_step_s
        samples = global_batch
    if comm.total_s:
        if train:  # inference folds it into prefill_s / decode_step_s already
            phase_out["communication (exposed)"] = comm.exposed_s
        notes.append(comm.note + f"; bus bandwidth {busbw / 1e9:.0f} GB/s "
                     f"({link} peer link x efficiency)")
    samples_per_s = samples / step_s if step_s > 0 else 0.0
    tokens_per_sample = w.tokens_per_sample or w.seq_len
    tokens_per_s = None
    if tokens_per_sample:
        if not train and decode_step_s is not None:
            tokens_per_s = global_batch * (gen_len if gen_len is not None else (w.gen_len or 0)) / step_s
        else:
            tokens_per_s = samples * tokens_per_sample / step_s if step_s > 0 else 0.0
    flops_global = (w.flops_per_step * k if train else w.flops_per_step) * plan.dp
    if not train and decode_step_s is not None:
        gen_n = gen_len if gen_len is not None else (w.gen_len or 0)
        flops_global += gen_n * sum(op.flops for op in w.decode_ops) * plan.dp
    mfu = flops_global / (step_s * tensor_peak * plan.num_gpus) if step_s > 0 else None
    bound = "compute" if compute_s >= memory_s else "memory"
    host_exposed *= k if train else 1
    shares = {"compute": compute_s, "memory": memory_s, "launch": launch_s, "communication": comm.exposed_s,
              "host": host_exposed}
    limiter = max(shares, key=lambda name: shares[name])
    by_class = {name: sec * (k if train and name != "optimizer" else 1) for name, sec in by_group.items()}
    by_class["communication"] += comm.exposed_s
    by_class["host (exposed)"] = host_exposed

    # --- input pipeline ---
    h2d_gbs = (ic.c2c_gbs / 2) if ic.c2c_gbs else ic.pcie_gbs
    unified = eff.arch == "orin"
    h2d_s = 0.0
    if w.input_bytes_per_sample and not unified:
        h2d_s = micro * w.input_bytes_per_sample / ((h2d_gbs or 15.75) * 1e9 * eff.h2d)
    loader = loader_samples_per_s
    loader_note = None
    if loader is None and w.family in ("cnn", "vit") and w.image_size:
        loader = DECODE_IMAGES_PER_S_PER_CORE * HOST_CORES_PER_GPU * plan.num_gpus
        loader_note = (f"input: image decode on the CPU assumed at {DECODE_IMAGES_PER_S_PER_CORE:.0f} images/s per "
                       f"core x {HOST_CORES_PER_GPU} cores per GPU = {loader:,.0f} images/s (pass "
                       "loader_samples_per_s to use your measured rate)")
    micro_step_s = step_s / max(1, k) if train else step_s
    advice = []
    if h2d_s > micro_step_s:
        advice.append(f"host->device copies ({h2d_s * 1e3:.2f} ms per micro-step) exceed GPU time: use pinned "
                      "memory with non_blocking copies, send uint8 / smaller dtypes and convert on the GPU, or "
                      "keep the data on the GPU")
    if loader is not None and loader < samples_per_s:
        advice.append(f"the loader delivers {loader:,.0f} samples/s but the GPUs could take {samples_per_s:,.0f}: "
                      "add DataLoader workers (num_workers), decode on the GPU (NVIDIA DALI / torchvision.io "
                      "decode_jpeg on cuda), pre-process to a faster format, or cache decoded samples")
    input_bound = bool(advice)
    if input_bound:
        limiter = "input"
    # The job runs at the slowest of the GPUs (host dispatch included in step_s), the loader and the copies.
    effective_sps = samples_per_s
    if loader is not None:
        effective_sps = min(effective_sps, loader)
    if h2d_s > micro_step_s:
        effective_sps = min(effective_sps, global_batch / h2d_s)
    effective_tps = tokens_per_s * effective_sps / samples_per_s if tokens_per_s and samples_per_s else tokens_per_s

    time_to_train = None
    if dataset_samples:
        time_to_train = dataset_samples * epochs / effective_sps if effective_sps else None
    elif total_tokens and effective_tps:
        time_to_train = total_tokens / effective_tps

    time = TimeEstimate(step_s=step_s, samples_per_s=samples_per_s, tokens_per_s=tokens_per_s, bound=bound,
                        limiter=limiter, mfu=mfu, phases_s=phase_out, compute_bound_s=compute_s,
                        memory_bound_s=memory_s, launch_s=launch_s, comm_s=comm.exposed_s, comm_total_s=comm.total_s,
                        host_s=host_exposed, runtime=runtime, by_class_s=by_class,
                        prefill_s=prefill_s, decode_step_s=decode_step_s, decode_tokens_per_s=decode_tps,
                        time_to_train_s=time_to_train, input_bound=input_bound,
                        input_advice="; ".join(advice) or None, h2d_s=h2d_s, loader_samples_per_s=loader,
                        effective_samples_per_s=effective_sps)

    assumptions = [
        f"batch_size {global_batch} is the global batch of one micro-step across {plan.dp} data-parallel "
        f"replica(s): {micro} per GPU" + (f"; {k} micro-steps per optimizer step" if train and k > 1 else ""),
        f"parallelism: {plan.describe()}",
        f"memory is per GPU and predicts nvidia-smi: CUDA context {eff.cuda_context_bytes / 2**20:.0f} MiB "
        f"({eff.arch}; {CONTEXT_SOURCE}) + kernel images loaded on first use "
        f"({(KERNEL_MODULES_TRAIN_BYTES if train else KERNEL_MODULES_INFER_BYTES) / 2**20:.0f} MiB; Hugging Face "
        "'model training anatomy': context + kernels 1.3 GB with eager loading), cuBLAS workspaces, "
        f"{ALLOCATOR_SUMMARY}; fits = total <= card memory "
        f"less a {RESERVE_FRACTION:.0%} reserve",
        "amp-* trains fp32 master weights (4 B) with autocast; its cached 16-bit weight casts (2 B/param) are "
        "counted under activations" if train and w.precision.startswith("amp") else
        f"weights held at {w.precision}",
        f"time: roofline per op with {eff.arch} efficiencies (GEMM {eff.matmul:.0%}, conv {eff.conv:.0%}, "
        f"memory {eff.memory:.0%} of peak, launch {eff.launch_overhead_s * 1e6:.1f} us/kernel), falling for "
        f"small ops; source: {eff.source}",
        clock_note,
        (f"runtime eager: each phase takes at least its dispatched operators x host time per op ("
         f"{eff.host_op_s * 1e6:.1f} us forward, {eff.host_op_s * HOST_BACKWARD_FRACTION * 1e6:.1f} us backward; "
         f"{HOST_SOURCE}; per-layer op counts: {EAGER_SOURCE}); host time beyond GPU time: "
         f"{host_exposed * 1e3:.3g} ms per step" + ("; the host runs the ops itself, so it adds" if serial_host
                                                     else "") + " (runtime='graph' for CUDA graphs / "
         "torch.compile reduce-overhead / TensorRT / vLLM / llama.cpp)") if runtime == "eager" else
        "runtime graph: no per-op host floor (CUDA graphs / compiled runtime); kernel gaps only",
        "step_s is GPU time; the input pipeline (loader, host->device copies) is assumed overlapped with it, "
        "and the job runs at the slower of the two (effective_samples_per_s, used for time to train)",
        *parts.notes,
        *notes,
    ]
    if is_nchw_cnn(w) and rates.layout_transposes and not channels_last:
        assumptions.append(LAYOUT_SOURCE)
    unaligned = unaligned_gemms(w.ops, 16 // compute_bytes(w.precision)) if rates.unaligned_flops else []
    if unaligned:
        extra = sum(f / min(rates.tensor_flops, rates.unaligned_flops * a) - f / rates.tensor_flops
                    for _n, f, a in unaligned) * (k if train else 1)
        names = ", ".join(sorted({n.split("[")[0] for n, _f, _a in unaligned}))
        assumptions.append(f"{UNALIGNED_SOURCE}: {names}")
        notes_pad = (f"pad the dimensions that are not multiples of {16 // compute_bytes(w.precision)} ({names}; "
                     f"e.g. a vocabulary of 50257 -> 50304): about {extra * 1e3:.3g} ms "
                     f"({extra / step_s:.0%}) less step time here")
        assumptions.append("advice: " + notes_pad)
    if calibrated:
        assumptions.append(f"calibrated by a probe of this card: {', '.join(changed)}")
    elif (note := uncalibrated_note(calibration)) is not None:
        assumptions.append(note)
    if fallback:
        assumptions.append(fallback)
    if package_note:
        assumptions.append(package_note)
    if loader_note and loader_samples_per_s is None:
        assumptions.append(loader_note)
    if not train and w.decode_ops:
        assumptions.append("tokens_per_s counts generated tokens per second over prefill + decode")
    if mfu is not None:
        assumptions.append("MFU counts the workload's FLOPs (recomputation included when checkpointing) "
                           "against the dense tensor peak")
    assumptions.extend(w.assumptions)
    if w.uncounted_ops:
        assumptions.append(f"ops not counted by the workload: {', '.join(w.uncounted_ops)}")
    return Estimate(model=model_name or w0.name, gpu_id=spec.id, gpu_name=spec.name, num_gpus=plan.num_gpus,
                    parallelism=plan.strategy, workload=w, batch_size=global_batch, micro_batch_per_gpu=micro,
                    memory=mem, time=time, flops_per_step=flops_global, calibrated=calibrated,
                    assumptions=tuple(assumptions), calibrated_figures=tuple(changed))


def check_options(batch_size: Any, precision: Any, optimizer: Any, mode: Any, grad_accum: Any,
                   epochs: Any, num_gpus: Any) -> None:
    for name, value in (("batch_size", batch_size), ("grad_accum", grad_accum), ("num_gpus", num_gpus)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise EstimateError(f"{name} must be a whole number >= 1, got {value!r}")
    if precision not in PRECISIONS:
        raise EstimateError(f"unknown precision {precision!r}", hint=f"accepted: {', '.join(PRECISIONS)}")
    if optimizer is not None and optimizer not in OPTIMIZERS:
        raise EstimateError(f"unknown optimizer {optimizer!r}", hint=f"accepted: {', '.join(OPTIMIZERS)}")
    if mode not in MODES:
        raise EstimateError(f"unknown mode {mode!r}", hint=f"accepted: {', '.join(MODES)}")
    if not isinstance(epochs, (int, float)) or isinstance(epochs, bool) or not epochs > 0:
        raise EstimateError(f"epochs must be > 0, got {epochs!r}")


def is_named_model(model: Any) -> bool:
    """A preset name, config path or config dict (not an ``nn.Module``)."""
    return isinstance(model, (str, Path, Mapping))


def build_workload(model: Any, *, batch_size: int = 1, seq_len: int | None = None, image_size: int | None = None,
                   precision: str = "amp-bf16", optimizer: str | None = "adamw", mode: str = "train",
                   gradient_checkpointing: bool = False, lora_rank: int | None = None,
                   quantize_base: str | None = None, grad_accum: int = 1, example_inputs: Any = None,
                   gen_len: int | None = None) -> Workload:
    """A ``Workload`` from a preset name, config path/dict, ``nn.Module`` or an already built workload."""
    if isinstance(model, Workload):
        return model
    try:
        from advisor.workload import load_workload  # type: ignore[attr-defined]
    except ImportError as exc:
        raise EstimateError("the workload builder (advisor.workload.load_workload) is not available") from exc
    kw: dict[str, Any] = {"precision": precision, "optimizer": optimizer, "mode": mode}
    if is_named_model(model):
        kw["batch_size"] = batch_size  # a traced module takes its batch from example_inputs
    optional = {"seq_len": seq_len, "image_size": image_size, "lora_rank": lora_rank,
                "quantize_base": quantize_base, "example_inputs": example_inputs, "gen_len": gen_len}
    kw.update({k: v for k, v in optional.items() if v is not None})
    if gradient_checkpointing:
        kw["gradient_checkpointing"] = True
    if grad_accum != 1:
        kw["grad_accum"] = grad_accum
    if isinstance(model, Path):
        model = str(model)
    result: Workload = load_workload(model, **kw)
    return result
