"""Expert parallelism's memory split: which expert parameters a GPU does not hold.

``advisor.estimator.parallel`` prices the plan and its all-to-alls; ``advisor.estimator.memory`` takes these off.
Pure arithmetic.
"""

from __future__ import annotations

from advisor.errors import EstimateError
from advisor.estimator.parallel import ParallelPlan
from advisor.workload.base import Workload


def experts_elsewhere(w: Workload, plan: ParallelPlan) -> int:
    """Expert parameters one GPU does not hold under expert parallelism: (1 - 1/n) of them (0 under other plans).

    Raises:
        EstimateError: ``ep`` for a workload that does not carry its expert parameter count (a traced module), or
            that trains adapters / a head on a frozen or quantized base (which parameters are trainable experts is
            not modelled).
    """
    if plan.ep <= 1:
        return 0
    experts = (w.arch or {}).get("expert_params")
    if not experts:
        raise EstimateError(f"expert parallel: {w.name} does not carry its expert parameter count",
                            hint="ep is accepted for MoE models built from a preset or config.json (e.g. mixtral-8x7b)")
    if (w.mode == "train" and w.trainable_params != w.params) or w.options.quantize_base:
        raise EstimateError("expert parallel is modelled for full training and inference only, not for LoRA, a "
                            "frozen base or a quantized base",
                            hint="drop --lora-rank / --quantize-base, or use ddp / zero1-3 / fsdp for this run")
    return int(experts) - int(experts) // plan.ep


def ep_memory_note(w: Workload, plan: ParallelPlan, elsewhere: int) -> str:
    """What ep holds per GPU.

    The experts a GPU does not hold take their weights, and in training their gradients, optimizer state and autocast
    copies, with them; balanced routing brings each GPU as many routed tokens as its own micro-batch sends out, so its
    activations are its micro-batch's.
    """
    experts = int((w.arch or {}).get("num_experts") or 0)
    return (f"ep: each GPU holds {experts // plan.ep} of the {experts} experts of every MoE layer "
            f"({elsewhere / 1e9:.2f}B expert params held elsewhere) with their gradients and optimizer state, and a "
            "replica of the rest; activations as its own micro-batch's (balanced routing); gradients reduced in one "
            "buffer they are views of (Megatron-Core's DDP), no bucket copy")
