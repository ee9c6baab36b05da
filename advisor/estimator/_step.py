"""One step's time on the card.

The ops' roofline and host floor, then a train step (forward, backward, optimizer, gradient communication) or an
inference request (prefill, then one decode step per generated token), and what that makes of throughput, MFU, the bound
and the limiter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from advisor.catalog import GpuSpec
from advisor.estimator._prepare import PreparedWorkload
from advisor.estimator.attention import ATTENTION_SOURCE
from advisor.estimator.conv import WINOGRAD_SOURCE
from advisor.estimator.efficiency import ArchEfficiency
from advisor.estimator.expert_parallel import experts_elsewhere
from advisor.estimator.host import (
    CHECKPOINT_HOST_SOURCE,
    GRAD_SCALER_SOURCE,
    GRAD_SCALER_SYNC,
    LIBRARY_HOST_SOURCE,
    QUEUE_SOURCE,
    backward_fraction,
    host_floor,
    library_call_ops,
    phase_host_s,
    queue_replay,
)
from advisor.estimator.index_bound import POOL_SOURCE, STRIDED_SOURCE, max_pool_rate
from advisor.estimator.memory import grad_bytes_per_param
from advisor.estimator.ops import PreparedOp
from advisor.estimator.parallel import (
    CommEstimate,
    ParallelPlan,
    allgather_s,
    bus_bandwidth_bytes_s,
    data_parallel_comm,
    expert_parallel_comm,
    peer_link,
    tensor_parallel_comm,
)
from advisor.estimator.pricing import CONV_3X3, GROUPS, PHASES
from advisor.estimator.time import CardRates, OpsTime, class_advice, ops_time_detail
from advisor.precision import activation_bytes
from advisor.workload.base import Workload


@dataclass(frozen=True, slots=True)
class StepInputs:
    """What one step is priced from: the workload at its per-GPU micro-batch on one card, at the card's rates.

    ``prep`` is the workload prepared once, ``w`` it at micro-batch ``micro``; ``arch`` its architecture figures
    (hidden size, layers) for tensor-parallel traffic; ``gen_len`` the tokens to generate (``None``: the
    workload's); ``tensor_peak`` the dense tensor peak MFU is counted against; ``serial_host``: the card is the
    host's CPU (validate's pseudo-card).
    """

    prep: PreparedWorkload
    w: Workload
    spec: GpuSpec
    plan: ParallelPlan
    eff: ArchEfficiency
    rates: CardRates
    arch: Mapping[str, Any]
    micro: int
    global_batch: int
    gen_len: int | None
    runtime: str
    channels_last: bool
    tensor_peak: float
    serial_host: bool


@dataclass(frozen=True, slots=True)
class StepTime:
    """One step (train: one optimizer step of ``grad_accum`` micro-steps; infer: one request) on the card."""

    step_s: float
    samples_per_s: float
    tokens_per_s: float | None
    flops_global: float
    mfu: float | None
    bound: str
    limiter: str
    phases_s: dict[str, float]
    compute_s: float
    memory_s: float
    launch_s: float
    comm: CommEstimate
    host_exposed_s: float
    by_class_s: dict[str, float]
    class_advice: dict[str, str]
    prefill_s: float | None
    decode_step_s: float | None
    decode_tokens_per_s: float | None
    notes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Totals:
    """The roofline sums of the step's ops (the decode steps', when it decodes, added)."""

    compute_s: float
    memory_s: float
    launch_s: float
    host_s: float
    by_group: dict[str, float]


@dataclass(frozen=True, slots=True)
class _Link:
    """The peer link the GPUs talk over: its bus bandwidth (bytes/s) and name."""

    busbw: float
    name: str


def _sum_phases(phases: list[float], names: tuple[str, ...]) -> float:
    return sum(phases[PHASES.index(n)] for n in names)


def _train_step(w: Workload, arch: Mapping[str, Any], plan: ParallelPlan, phases: list[float], micro: int,
                link: _Link) -> tuple[float, dict[str, float], CommEstimate]:
    """Step time, its phases and communication of one optimizer step (``grad_accum`` micro-steps)."""
    k = w.grad_accum
    fwd = _sum_phases(phases, ("forward", "prefill"))
    bwd = _sum_phases(phases, ("backward",))
    opt = _sum_phases(phases, ("optimizer",)) / (plan.dp if plan.zero_stage >= 1 else 1)
    comm = CommEstimate(0.0, 0.0, "")
    if plan.strategy == "ep":
        elsewhere = experts_elsewhere(w, plan)
        opt *= (w.params - elsewhere) / w.params  # the optimizer steps the parameters this GPU holds
        a2a = _all_to_alls(w, arch, plan, micro * (w.seq_len or 1), 3 if w.gradient_checkpointing else 2, link)
        # the non-expert (replicated) gradients all-reduced as DDP's, overlapped with backward; each expert lives on
        # one GPU of the n (expert data-parallel degree 1): its gradients are not reduced
        replicated = w.trainable_params - int((w.arch or {}).get("expert_params") or 0)
        dp = data_parallel_comm(plan, grad_bytes=replicated * grad_bytes_per_param(w.precision),
                                param_bytes_16=0.0, overlap_s=bwd, busbw_bytes_s=link.busbw)
        comm = CommEstimate(a2a.total_s * k + dp.total_s, a2a.exposed_s * k + dp.exposed_s,
                            f"{a2a.note}; {dp.note} (the non-expert gradients)")
    elif plan.strategy == "tp":
        passes = 3 if w.gradient_checkpointing else 2
        comm = tensor_parallel_comm(plan, num_layers=arch.get("num_layers") or 1, passes=passes,
                                    busbw_bytes_s=link.busbw,
                                    activation_bytes=micro * (w.seq_len or 1) * (arch.get("hidden_size") or 0)
                                    * activation_bytes(w.precision))
        comm = CommEstimate(comm.total_s * k, comm.exposed_s * k, comm.note)
    elif plan.dp > 1:
        grad_b = w.trainable_params * (2.0 if plan.zero_stage and w.precision.startswith("amp")
                                       else grad_bytes_per_param(w.precision))
        comm = data_parallel_comm(plan, grad_bytes=grad_b, param_bytes_16=w.params * 2.0,
                                  overlap_s=bwd + (fwd if plan.zero_stage >= 3 else 0.0), busbw_bytes_s=link.busbw)
    step_s = k * (fwd + bwd) + opt + comm.exposed_s
    return step_s, {"forward": k * fwd, "backward": k * bwd, "optimizer": opt}, comm


def _all_to_alls(w: Workload, arch: Mapping[str, Any], plan: ParallelPlan, tokens: int, passes: int,
                 link: _Link) -> CommEstimate:
    """The expert-parallel all-to-alls of one micro-step over ``tokens`` per GPU (``passes`` forward-like passes).

    Every block of a MoE model is a MoE layer (Mixtral's); the routed hidden states cross in the working precision.
    """
    routed = (arch.get("experts_per_token") or 1) * tokens * (arch.get("hidden_size") or 0) * activation_bytes(
        w.precision)
    return expert_parallel_comm(plan, moe_layers=arch.get("num_layers") or 1, routed_bytes=routed, passes=passes,
                                busbw_bytes_s=link.busbw)


def _forward_comm(s: StepInputs, link: _Link, tokens: int) -> CommEstimate | None:
    """One forward pass's tensor- or expert-parallel communication over ``tokens`` per GPU (``None``: neither plan)."""
    w, plan = s.w, s.plan
    if plan.strategy == "tp":
        return tensor_parallel_comm(plan, num_layers=s.arch.get("num_layers") or 1, passes=1, busbw_bytes_s=link.busbw,
                                    activation_bytes=tokens * (s.arch.get("hidden_size") or 0)
                                    * activation_bytes(w.precision))
    if plan.strategy == "ep":
        return _all_to_alls(w, s.arch, plan, tokens, 1, link)
    return None


@dataclass(frozen=True, slots=True)
class _Request:
    step_s: float
    phases_s: dict[str, float]
    comm: CommEstimate
    prefill_s: float
    decode_step_s: float | None
    decode_tokens_per_s: float | None
    totals: _Totals


def _infer_step(s: StepInputs, phases: list[float], gen: int, link: _Link, totals: _Totals) -> _Request:
    """One inference request: a prefill (the whole forward), then ``gen`` decode steps when the model decodes.

    Returns the request with ``totals`` plus the decode steps' (``totals`` itself is not changed).
    """
    w, plan, micro = s.w, s.plan, s.micro
    act_elem = activation_bytes(w.precision)
    comm = CommEstimate(0.0, 0.0, "")
    decode_step_s = decode_tps = None
    prefill_s = _sum_phases(phases, ("forward", "prefill", "backward", "optimizer"))
    pcomm = _forward_comm(s, link, micro * (w.seq_len or 1))
    if pcomm is not None:
        comm = pcomm
        prefill_s += comm.exposed_s
    gather_s = 0.0
    if plan.zero_stage >= 3 and plan.dp > 1:
        # sharded weights are all-gathered for every forward pass (prefill and each decode step)
        gather_s = allgather_s(w.params * float(act_elem), plan.dp, link.busbw)
        comm = CommEstimate(gather_s, gather_s, f"{plan.strategy} inference: all weights all-gathered for "
                                                "every forward pass (prefill and each decode step)")
        prefill_s += gather_s
    step_s = prefill_s
    phase_out = {"prefill" if w.decode_ops else "forward": prefill_s}
    if w.decode_ops and gen:
        dops = s.prep.ops(micro, plan.tp, decode=True, runtime=s.runtime)
        ddetail = ops_time_detail(dops, s.rates)
        dphases, dc, dm, dl = ddetail.phases, ddetail.compute_s, ddetail.memory_s, ddetail.launch_s
        by_group = dict(totals.by_group)
        for name, sec in zip(GROUPS, ddetail.by_group, strict=True):
            by_group[name] += gen * sec
        host_s = totals.host_s
        if s.runtime == "eager":
            dphases, dhost = host_floor(dphases, dops, w.eager_ops, s.eff, s.serial_host)
            host_s += gen * dhost
        decode_step_s = sum(dphases) + gather_s
        if gather_s:
            comm = CommEstimate(comm.total_s + gen * gather_s, comm.exposed_s + gen * gather_s, comm.note)
        dcomm = _forward_comm(s, link, micro)  # one token per sequence per decode step
        if dcomm is not None:
            decode_step_s += dcomm.exposed_s
            comm = CommEstimate(comm.total_s + gen * dcomm.total_s, comm.exposed_s + gen * dcomm.exposed_s,
                                comm.note)
        totals = _Totals(totals.compute_s + gen * dc, totals.memory_s + gen * dm, totals.launch_s + gen * dl, host_s,
                         by_group)
        step_s = prefill_s + gen * decode_step_s
        decode_tps = s.global_batch / decode_step_s if decode_step_s > 0 else None
        phase_out["decode"] = gen * decode_step_s
    return _Request(step_s, phase_out, comm, prefill_s, decode_step_s, decode_tps, totals)


def _mechanism_notes(s: StepInputs, step_ops: tuple[PreparedOp, ...]) -> list[str]:
    """The assumption text of each mechanism that priced some op of this step on this card."""
    rates = s.rates
    notes = []
    if rates.winograd_factor > 1 and any(op.cls == CONV_3X3 for op in step_ops):
        notes.append(WINOGRAD_SOURCE)
    if rates.exponentials_s and any(op.tiles for op in step_ops):
        notes.append(ATTENTION_SOURCE)
    if rates.strided_elements_s and any(op.strided for op in step_ops):
        notes.append(STRIDED_SOURCE)
        if not s.channels_last and any(max_pool_rate(op) for op in s.w.ops):
            notes.append(POOL_SOURCE)
    return notes


def _eager_host(s: StepInputs, step_ops: tuple[PreparedOp, ...], detail: OpsTime,
                phases: list[float]) -> tuple[list[float], float, list[str]]:
    """(the phases with the eager host's side, the host time beyond the GPU's, the host's notes)."""
    w, eff, serial_host = s.w, s.eff, s.serial_host
    train_ckpt = w.mode == "train" and w.gradient_checkpointing
    notes: list[str] = []
    library = library_call_ops(step_ops, eff, serial_host)
    # a traced step (its calls in order) goes through the launch queue when every traced op is priced; else the
    # host-floor rule, and the note says why (ops of another runtime left out by prepare_ops)
    queue = bool(w.calls) and not serial_host
    if queue and len(step_ops) != len(w.ops):
        queue = False
        notes.append(f"launch-queue replay not run: {len(w.ops) - len(step_ops)} of the traced step's {len(w.ops)} "
                     "ops belong to another runtime; the host side is priced by the per-phase floor instead")
    if queue:
        host = phase_host_s(step_ops, w.eager_ops, eff, checkpointed=train_ckpt, library=library)
        sync = [PHASES.index(p) for p in GRAD_SCALER_SYNC.get(w.precision, ())] if w.mode == "train" else []
        queued, host_s = s.prep.priced(
            ("queue", id(step_ops), s.rates, eff, serial_host, train_ckpt, tuple(sync)),
            lambda: queue_replay(w.calls, step_ops, detail.per_op, phases, host, eff, s.rates.launch_s,
                                 backward_fraction(w.eager_ops), sync_before=sync))
        phases = list(queued)
        notes += [QUEUE_SOURCE, GRAD_SCALER_SOURCE] if sync else [QUEUE_SOURCE]
    else:
        phases, host_s = host_floor(phases, step_ops, w.eager_ops, eff, serial_host,
                                    checkpointed=train_ckpt, library=library)
    if any(library):
        notes.append(LIBRARY_HOST_SOURCE)
    if not serial_host and train_ckpt:
        notes.append(CHECKPOINT_HOST_SOURCE)
    return phases, host_s, notes


def step_time(s: StepInputs) -> StepTime:
    """The step of ``s.w`` (at per-GPU micro-batch ``s.micro``) on ``s.plan.num_gpus`` x ``s.spec`` at ``s.rates``."""
    w, plan = s.w, s.plan
    step_ops = s.prep.ops(s.micro, plan.tp, runtime=s.runtime, channels_last=s.channels_last)
    # a card's op times and launch queue are the same at every card count with this micro-batch: priced once
    detail = s.prep.priced(("ops", id(step_ops), s.rates), lambda: ops_time_detail(step_ops, s.rates))
    phases = list(detail.phases)
    notes = _mechanism_notes(s, step_ops)
    host_s = 0.0
    if s.runtime == "eager":
        phases, host_s, host_notes = _eager_host(s, step_ops, detail, phases)
        notes += host_notes
    totals = _Totals(detail.compute_s, detail.memory_s, detail.launch_s, host_s,
                     dict(zip(GROUPS, detail.by_group, strict=True)))
    peer_gbs, has_fabric, link_name = peer_link(s.spec.interconnect, plan.num_gpus)
    link = _Link(bus_bandwidth_bytes_s(peer_gbs, has_fabric, plan.num_gpus), link_name)
    gen = s.gen_len if s.gen_len is not None else (w.gen_len or 0)
    if w.mode == "train":
        step_s, phase_out, comm = _train_step(w, s.arch, plan, phases, s.micro, link)
        req = _Request(step_s, phase_out, comm, 0.0, None, None, totals)
    else:
        req = _infer_step(s, phases, gen, link, totals)
    if req.comm.total_s:
        notes.append(req.comm.note + f"; bus bandwidth {link.busbw / 1e9:.0f} GB/s "
                     f"({link.name} peer link x efficiency)")
    return _result(s, step_ops, req, gen, notes)


def _result(s: StepInputs, step_ops: tuple[PreparedOp, ...], req: _Request, gen: int, notes: list[str]) -> StepTime:
    """Throughput, MFU, bound, limiter and the breakdown by class of a priced step."""
    w, plan, global_batch, totals = s.w, s.plan, s.global_batch, req.totals
    k = w.grad_accum
    train = w.mode == "train"
    step_s, comm, decode_step_s = req.step_s, req.comm, req.decode_step_s
    phase_out = dict(req.phases_s)
    if comm.total_s and train:  # inference folds it into prefill_s / decode_step_s already
        phase_out["communication (exposed)"] = comm.exposed_s
    samples = global_batch * k if train else global_batch
    samples_per_s = samples / step_s if step_s > 0 else 0.0
    tokens_per_sample = w.tokens_per_sample or w.seq_len
    tokens_per_s = None
    if tokens_per_sample:
        if not train and decode_step_s is not None:
            tokens_per_s = global_batch * gen / step_s
        else:
            tokens_per_s = samples * tokens_per_sample / step_s if step_s > 0 else 0.0
    flops_global = (w.flops_per_step * k if train else w.flops_per_step) * plan.dp
    if not train and decode_step_s is not None:
        flops_global += gen * sum(op.flops for op in w.decode_ops) * plan.dp
    mfu = flops_global / (step_s * s.tensor_peak * plan.num_gpus) if step_s > 0 else None
    bound = "compute" if totals.compute_s >= totals.memory_s else "memory"
    host_exposed = totals.host_s * (k if train else 1)
    shares: dict[str, Any] = {"compute": totals.compute_s, "memory": totals.memory_s, "launch": totals.launch_s,
                              "communication": comm.exposed_s, "host": host_exposed}
    limiter = max(shares, key=lambda name: shares[name])
    by_class = {name: sec * (k if train and name != "optimizer" else 1) for name, sec in totals.by_group.items()}
    by_class["communication"] += comm.exposed_s
    by_class["host (exposed)"] = host_exposed
    return StepTime(step_s=step_s, samples_per_s=samples_per_s, tokens_per_s=tokens_per_s, flops_global=flops_global,
                    mfu=mfu, bound=bound, limiter=limiter, phases_s=phase_out, compute_s=totals.compute_s,
                    memory_s=totals.memory_s, launch_s=totals.launch_s, comm=comm, host_exposed_s=host_exposed,
                    by_class_s=by_class, prefill_s=None if train else req.prefill_s, decode_step_s=decode_step_s,
                    class_advice=class_advice(step_ops, s.rates, w.precision, s.eff, channels_last=s.channels_last,
                                              tensor_cores_16=s.spec.peak_flops("fp16") is not None),
                    decode_tokens_per_s=req.decode_tokens_per_s, notes=tuple(notes))
