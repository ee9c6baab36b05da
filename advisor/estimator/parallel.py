"""Multi-GPU strategies: how they split memory across GPUs and what they communicate.

- ``ddp``: every GPU holds the whole model; gradients are all-reduced (ring: each GPU sends and
  receives 2(n-1)/n x the gradient bytes), overlapped with backward except the last bucket.
- ``zero1`` / ``zero2`` / ``zero3`` (DeepSpeed ZeRO, Rajbhandari et al. 2020, "ZeRO: Memory
  Optimizations Toward Training Trillion Parameter Models"): stage 1 shards the optimizer state,
  stage 2 also the gradients, stage 3 also the weights.  Stages 1-2 move the same volume as DDP
  (reduce-scatter + all-gather); stage 3 moves 1.5x (weights all-gathered in forward and again in
  backward, gradients reduce-scattered).  ``fsdp`` (FULL_SHARD) is modelled as ZeRO-3.
- ``tp`` (Megatron-LM, Shoeybi et al. 2019; activations: Korthikanti et al. 2022): weights, KV
  cache and most activations split n ways; two all-reduces of b x s x h activations per layer in
  forward and two in backward, on the critical path (not overlapped).
- ``ep`` (expert parallelism with data parallelism over the same GPUs, as DeepSpeed-MoE, Rajbhandari et al. 2022,
  and Megatron-Core's MoE lay it out): each GPU holds num_experts / n of every MoE layer's experts (their
  gradients and optimizer state with them) and a replica of everything else; each takes its own slice of the batch.
  Per MoE layer the routed tokens' hidden states cross the link in two all-to-alls forward (dispatch, combine) and
  two backward, on the critical path; the non-expert gradients are all-reduced as DDP's.

Bandwidths are the nccl-tests "bus bandwidth": a ring all-reduce of S bytes takes
2(n-1)/n x S / busbw; busbw is the card's one-direction peer bandwidth (NVLink / Infinity Fabric,
else PCIe) times an efficiency.  Pure arithmetic: no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from advisor.errors import EstimateError
from advisor.workload.options import PARALLELISMS as STRATEGIES
from advisor.workload.options import check_count

#: Achieved NCCL bus bandwidth as a fraction of the one-direction link peak.
NVLINK_BUS_EFFICIENCY = 0.80  # nccl-tests all_reduce_perf on 8x H100 SXM: ~360 of 450 GB/s without NVLS
PCIE_BUS_EFFICIENCY = 0.70  # nccl-tests over PCIe Gen4 x16 (no NVLink): ~18-22 of 31.5 GB/s
#: Per-GPU inter-node bandwidth beyond one node of 8 (one 400 Gb/s NDR InfiniBand NIC per GPU, as DGX H100).
INTER_NODE_GBS = 50.0
GPUS_PER_NODE = 8
#: Latency of one NCCL collective launch (small messages), seconds.
COLLECTIVE_LATENCY_S = 15e-6
#: PyTorch DDP default bucket size (``bucket_cap_mb=25``): the last bucket's all-reduce is not overlapped.
DDP_BUCKET_BYTES = 25 * 1024**2
FALLBACK_PEER_GBS = 16.0  # a card with no link figures: assume PCIe Gen3 x16 (~15.8 GB/s)


@dataclass(frozen=True, slots=True)
class ParallelPlan:
    """How a step is spread over GPUs.

    Attributes:
        strategy: ``single``, ``ddp``, ``zero1``, ``zero2``, ``zero3``, ``fsdp``, ``tp`` or ``ep``.
        num_gpus: GPUs in all.
        dp: data-parallel degree (replicas that each take a slice of the batch; ``ep``: all of its GPUs).
        tp: tensor-parallel degree.
    """

    strategy: str
    num_gpus: int
    dp: int
    tp: int

    @property
    def zero_stage(self) -> int:
        """0 (none / DDP), 1, 2 or 3 (``fsdp`` counts as 3)."""
        return {"zero1": 1, "zero2": 2, "zero3": 3, "fsdp": 3}.get(self.strategy, 0)

    @property
    def ep(self) -> int:
        """Expert-parallel degree: how many ways each MoE layer's experts are split (1 but under ``ep``)."""
        return self.num_gpus if self.strategy == "ep" else 1

    @property
    def weights_divisor(self) -> int:
        """How many ways the weights are split (``ep`` splits the experts only: ``memory_parts`` takes them off)."""
        return self.tp if self.strategy == "tp" else self.dp if self.zero_stage >= 3 else 1

    @property
    def gradients_divisor(self) -> int:
        """How many ways the gradients are split."""
        return self.tp if self.strategy == "tp" else self.dp if self.zero_stage >= 2 else 1

    @property
    def optimizer_divisor(self) -> int:
        """How many ways the optimizer state is split."""
        return self.tp if self.strategy == "tp" else self.dp if self.zero_stage >= 1 else 1

    def describe(self) -> str:
        """One line for the assumptions."""
        if self.strategy == "single":
            return "one GPU"
        return f"{self.strategy} over {self.num_gpus} GPUs (data-parallel degree {self.dp}, tensor-parallel {self.tp})"


def resolve_plan(parallelism: str | None, num_gpus: int, *, num_heads: int | None = None,
                 num_experts: int | None = None) -> ParallelPlan:
    """Validate ``parallelism`` for ``num_gpus`` and return the plan.

    ``None`` means one GPU, or ``ddp`` for several.  ``ep`` on one GPU is the single-GPU plan.

    Raises:
        EstimateError: unknown strategy, non-positive count, tensor parallel beyond one node or
            over a head count it does not divide, expert parallel for a model without experts or over a
            count that does not divide its experts.
    """
    check_count("num_gpus", num_gpus)
    if parallelism is not None and parallelism not in STRATEGIES:
        raise EstimateError(f"unknown parallelism {parallelism!r}", hint=f"accepted: {', '.join(STRATEGIES)}")
    if parallelism == "ep" and not num_experts:
        dense = ", ".join(s for s in STRATEGIES if s != "ep")
        raise EstimateError("expert parallelism (ep) needs a mixture-of-experts model; this one has no experts",
                            hint=f"ep is accepted for MoE models (num_experts > 0, e.g. mixtral-8x7b); "
                                 f"for a dense model use one of {dense}")
    if num_gpus == 1:
        return ParallelPlan("single", 1, 1, 1)
    strategy = parallelism or "ddp"
    if strategy == "ep":
        if num_experts and num_experts % num_gpus:
            counts = ", ".join(str(d) for d in range(1, (num_experts or 1) + 1) if (num_experts or 1) % d == 0)
            raise EstimateError(f"expert parallel over {num_gpus} GPUs needs the expert count ({num_experts}) "
                                "to divide evenly", hint=f"accepted GPU counts for ep: {counts}")
        return ParallelPlan("ep", num_gpus, num_gpus, 1)
    if strategy == "tp":
        if num_gpus > GPUS_PER_NODE:
            raise EstimateError(f"tensor parallel over {num_gpus} GPUs spans nodes, which is not modelled",
                                hint=f"use tp with at most {GPUS_PER_NODE} GPUs, or zero3/fsdp")
        if num_heads and num_heads % num_gpus:
            raise EstimateError(f"tensor parallel over {num_gpus} GPUs needs the head count ({num_heads}) "
                                "to divide evenly", hint="pick a GPU count that divides the number of heads")
        return ParallelPlan("tp", num_gpus, 1, num_gpus)
    return ParallelPlan(strategy, num_gpus, num_gpus, 1)


def peer_link(interconnect: Any, num_gpus: int) -> tuple[float | None, bool, str]:
    """(one-direction GB/s, is a fabric, label) of the link a collective over ``num_gpus`` cards uses.

    NVLink *bridges* join pairs of cards only: beyond 2 GPUs a ring crosses PCIe.
    """
    fabric = interconnect.nvlink_gbs or interconnect.infinity_fabric_gbs
    text = (interconnect.fabric or "").lower()
    if fabric and ("bridge" in text or "pair" in text) and num_gpus > 2:
        return interconnect.pcie_gbs, False, "PCIe (the NVLink bridge joins pairs only)"
    if fabric:
        return fabric / 2, True, "NVLink" if interconnect.nvlink_gbs else "Infinity Fabric"
    return interconnect.pcie_gbs, False, "PCIe"


def bus_bandwidth_bytes_s(peer_gbs: float | None, has_fabric: bool, num_gpus: int) -> float:
    """Achieved collective bus bandwidth per GPU in bytes/s.

    Args:
        peer_gbs: the card's one-direction peer bandwidth in GB/s (``Interconnect.peer_gbs``).
        has_fabric: the peer link is NVLink / Infinity Fabric rather than PCIe.
        num_gpus: GPUs taking part; beyond one node of 8 the inter-node link caps it.
    """
    gbs = peer_gbs or FALLBACK_PEER_GBS
    eff = NVLINK_BUS_EFFICIENCY if has_fabric else PCIE_BUS_EFFICIENCY
    bw = gbs * eff
    if num_gpus > GPUS_PER_NODE:
        bw = min(bw, INTER_NODE_GBS * NVLINK_BUS_EFFICIENCY)
    return bw * 1e9


def allreduce_s(size_bytes: float, n: int, busbw_bytes_s: float) -> float:
    """Ring all-reduce of ``size_bytes`` over ``n`` GPUs: 2(n-1)/n x S / busbw + latency."""
    if n <= 1 or size_bytes <= 0:
        return 0.0
    return 2 * (n - 1) / n * size_bytes / busbw_bytes_s + COLLECTIVE_LATENCY_S


def allgather_s(size_bytes: float, n: int, busbw_bytes_s: float) -> float:
    """All-gather (or reduce-scatter) of a ``size_bytes`` total: (n-1)/n x S / busbw + latency."""
    if n <= 1 or size_bytes <= 0:
        return 0.0
    return (n - 1) / n * size_bytes / busbw_bytes_s + COLLECTIVE_LATENCY_S


def alltoall_s(size_bytes: float, n: int, busbw_bytes_s: float) -> float:
    """All-to-all of the ``size_bytes`` one GPU holds: the (n-1)/n of it bound elsewhere, at the bus bandwidth.

    nccl-tests count an all-to-all's bus bandwidth as an all-gather's ((n-1)/n x S / time): the same formula.
    """
    return allgather_s(size_bytes, n, busbw_bytes_s)


@dataclass(frozen=True, slots=True)
class CommEstimate:
    """Communication of one optimizer step, per GPU.

    Attributes:
        total_s: all communication time.
        exposed_s: the part not hidden behind compute (what adds to the step).
        note: how it was modelled (for the assumptions).
    """

    total_s: float
    exposed_s: float
    note: str


def data_parallel_comm(plan: ParallelPlan, *, grad_bytes: float, param_bytes_16: float, overlap_s: float,
                       busbw_bytes_s: float) -> CommEstimate:
    """Gradient / parameter traffic of DDP and ZeRO, once per optimizer step.

    Args:
        grad_bytes: bytes of all gradients as reduced (trainable params x gradient dtype).
        param_bytes_16: bytes of the weights as gathered by ZeRO-3 / FSDP (working precision).
        overlap_s: compute it can hide behind (backward for DDP/ZeRO-1/2, forward + backward for ZeRO-3).
        busbw_bytes_s: achieved bus bandwidth.
    """
    n = plan.dp
    if n <= 1 or plan.strategy in ("single", "tp"):
        return CommEstimate(0.0, 0.0, "no data-parallel communication")
    if plan.zero_stage >= 3:
        total = 2 * allgather_s(param_bytes_16, n, busbw_bytes_s) + allgather_s(grad_bytes, n, busbw_bytes_s)
        tail = total / 50  # the first layer's gather / last reduce-scatter cannot overlap (~ one of ~50 blocks)
        exposed = max(0.0, total - overlap_s) + tail
        note = (f"{plan.strategy}: weights all-gathered in forward and again in backward, gradients "
                f"reduce-scattered (1.5x DDP's volume, ZeRO paper); prefetch overlaps it with compute "
                f"except ~1/50 of it")
    else:
        total = allreduce_s(grad_bytes, n, busbw_bytes_s)
        last = allreduce_s(min(grad_bytes, DDP_BUCKET_BYTES), n, busbw_bytes_s)
        exposed = max(0.0, total - overlap_s) + last
        what = "gradient ring all-reduce" if plan.zero_stage == 0 else "gradient reduce-scatter + weight all-gather"
        note = (f"{plan.strategy}: {what}, 2(n-1)/n x {grad_bytes / 1e9:.2f} GB per step; overlapped with "
                f"backward except the last 25 MiB bucket")
    return CommEstimate(total, exposed, note)


def tensor_parallel_comm(plan: ParallelPlan, *, num_layers: int, activation_bytes: float, passes: int,
                         busbw_bytes_s: float) -> CommEstimate:
    """Megatron tensor-parallel all-reduces: 2 per layer per pass of ``activation_bytes`` (b x s x h).

    Args:
        num_layers: transformer blocks.
        activation_bytes: bytes of one b x s x h activation at the working precision.
        passes: forward-like passes (1 forward; 2 with backward; 3 with checkpoint recompute).
        busbw_bytes_s: achieved bus bandwidth.
    """
    if plan.strategy != "tp" or plan.tp <= 1:
        return CommEstimate(0.0, 0.0, "no tensor-parallel communication")
    count = 2 * num_layers * passes
    total = count * allreduce_s(activation_bytes, plan.tp, busbw_bytes_s)
    return CommEstimate(total, total, f"tp: {count} all-reduces of {activation_bytes / 1e6:.1f} MB "
                                      "(2 per layer per pass), on the critical path (not overlapped)")


def megatron_activation_factor(tp: int, *, seq_len: int | None, hidden: int | None, heads: int | None) -> float:
    """Fraction of one GPU's activations that remain per GPU under tensor parallel ``tp``.

    Korthikanti et al. 2022, eq. 2: per layer s b h (10 + 24/t + 5 a s / (h t)) against
    s b h (34 + 5 a s / h) without tensor parallelism (no sequence parallelism: layer norms and
    dropout inputs stay replicated).  Without shape facts, the 5as/h term is taken as 0.
    """
    if tp <= 1:
        return 1.0
    attn = 5 * heads * seq_len / hidden if seq_len and hidden and heads else 0.0
    return (10 + 24 / tp + attn / tp) / (34 + attn)


def expert_parallel_comm(plan: ParallelPlan, *, moe_layers: int, routed_bytes: float, passes: int,
                         busbw_bytes_s: float) -> CommEstimate:
    """Expert-parallel all-to-alls: 2 per MoE layer per pass (dispatch, combine) of ``routed_bytes``.

    Args:
        moe_layers: MoE blocks.
        routed_bytes: one GPU's routed hidden states: top_k x its tokens x hidden x bytes per element.
        passes: forward-like passes (1 forward; 2 with backward, whose all-to-alls carry the gradients back;
            3 with checkpoint recompute).
        busbw_bytes_s: achieved bus bandwidth.
    """
    if plan.ep <= 1:
        return CommEstimate(0.0, 0.0, "no expert-parallel communication")
    count = 2 * moe_layers * passes
    total = count * alltoall_s(routed_bytes, plan.ep, busbw_bytes_s)
    return CommEstimate(total, total, f"ep: {count} all-to-alls of {routed_bytes / 1e6:.1f} MB per GPU (dispatch and "
                                      f"combine per MoE layer per pass, (n-1)/n of it crossing the link), on the "
                                      "critical path (not overlapped); each GPU's experts priced as its own "
                                      "micro-batch's on one GPU (the same FLOPs under balanced routing; all "
                                      "experts' weights read)")
