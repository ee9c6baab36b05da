"""What to change when a workload does not fit: one table, shared by ``estimate``, ``recommend`` and the dashboard.

``fit_options(model, gpu, ...)`` estimates the workload as given, says truthfully what does not fit
(the model states alone, or the states plus one sample's activations), then re-estimates it with one
change at a time -- gradient checkpointing, a smaller micro-batch with gradient accumulation, an 8-bit
optimizer, LoRA, QLoRA, ZeRO-3 / tensor parallel over more cards, a bigger card -- and reports each
change's per-GPU memory, whether it fits, and its step time and throughput.  Every number comes from
``advisor.estimator.estimate``: nothing here has a memory or time formula of its own.

Pure: no torch, no printing.  pandas only in ``FitAdvice.to_frame``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from advisor.catalog import GpuSpec, get_gpu, load_specs
from advisor.errors import AdvisorError

#: LoRA rank suggested when the user gave none (the PEFT examples' and QLoRA paper's common choice).
DEFAULT_LORA_RANK = 16

FIT_COLUMNS: tuple[str, ...] = ("change", "how", "fits", "gpu_id", "gpu_name", "num_gpus", "memory_per_gpu_gib",
                                "usable_per_gpu_gib", "step_s", "effective_samples_per_s", "time_to_train_s",
                                "note")

_GIB = 1024**3


@dataclass(frozen=True, slots=True)
class FitOption:
    """One change to the workload or the hardware, and what the estimator says it gives.

    Attributes:
        change: what changes, in words ("gradient checkpointing").
        how: the CLI flags / API keywords that make it ("--gradient-checkpointing").
        kwargs: the ``estimate`` keyword arguments that differ from the original (``gpu``/``num_gpus``
            included when the hardware changes).
        fits: whether the changed workload fits.
        memory_per_gpu_bytes / usable_per_gpu_bytes: per GPU.
        step_s: one optimizer step (train) or request batch (infer).
        effective_samples_per_s: what the job runs at (loader and copies included).
        time_to_train_s: when the job size was given (dataset_samples / total_tokens), else ``None``.
        note: what the change costs or means (accuracy, effective batch, recomputation).
    """

    change: str
    how: str
    kwargs: Mapping[str, Any]
    fits: bool
    gpu_id: str
    gpu_name: str
    num_gpus: int
    memory_per_gpu_bytes: float
    usable_per_gpu_bytes: float
    step_s: float
    effective_samples_per_s: float
    time_to_train_s: float | None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        out = dataclasses.asdict(self)
        out["kwargs"] = dict(self.kwargs)
        return out


@dataclass(frozen=True, slots=True)
class FitAdvice:
    """Whether a workload fits, why not, and the changes that would make it fit.

    Attributes:
        fits: the workload as given fits.
        why: what does not fit, with the numbers (empty when it fits).
        options: one row per change tried, the ones that fit first (fastest first), then the rest.
    """

    fits: bool
    why: str
    options: tuple[FitOption, ...]

    @property
    def fitting(self) -> tuple[FitOption, ...]:
        """The options that fit."""
        return tuple(o for o in self.options if o.fits)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (``estimate --json``'s ``fit_options`` key)."""
        return {"fits": self.fits, "why": self.why, "options": [o.to_dict() for o in self.options]}

    def to_frame(self) -> Any:
        """The options as a pandas DataFrame (columns ``FIT_COLUMNS``; sizes in GiB)."""
        import pandas as pd

        rows = [{"change": o.change, "how": o.how, "fits": o.fits, "gpu_id": o.gpu_id, "gpu_name": o.gpu_name,
                 "num_gpus": o.num_gpus, "memory_per_gpu_gib": o.memory_per_gpu_bytes / _GIB,
                 "usable_per_gpu_gib": o.usable_per_gpu_bytes / _GIB, "step_s": o.step_s,
                 "effective_samples_per_s": o.effective_samples_per_s, "time_to_train_s": o.time_to_train_s,
                 "note": o.note} for o in self.options]
        return pd.DataFrame.from_records(rows, columns=list(FIT_COLUMNS))


def _gib(n: float) -> str:
    return f"{n / _GIB:,.1f} GiB"


def why_it_does_not_fit(e: Any) -> str:
    """What does not fit, in words with the numbers (``""`` when it fits)."""
    m = e.memory
    if m.fits:
        return ""
    b = m.breakdown_bytes
    states = b.get("weights", 0.0) + b.get("gradients", 0.0) + b.get("optimizer", 0.0)
    per_step = b.get("activations", 0.0) + b.get("kv_cache", 0.0)
    usable = m.usable_bytes
    head = (f"needs {_gib(m.total_bytes)} per GPU, {e.gpu_name} has {_gib(usable)} usable "
            f"({_gib(m.capacity_bytes)} less a reserve)")
    split = (f"model states {_gib(states)} (weights {_gib(b.get('weights', 0.0))}, gradients "
             f"{_gib(b.get('gradients', 0.0))}, optimizer {_gib(b.get('optimizer', 0.0))}), activations"
             + (" + KV cache" if b.get("kv_cache") else "") + f" {_gib(per_step)} at {e.micro_batch_per_gpu} "
             f"per GPU, overhead {_gib(b.get('overhead', 0.0))}")
    if states > usable:
        return f"{head}: the model states alone ({_gib(states)}) exceed it; {split}"
    if m.max_batch_size:
        return (f"{head}: {split}; the largest global batch that fits is {m.max_batch_size} (asked "
                f"{e.batch_size})")
    return (f"{head}: the model states ({_gib(states)}) fit, but not with one sample's activations and the "
            f"overhead: not even batch 1 per GPU fits; {split}")


def _option(change: str, how: str, kwargs: Mapping[str, Any], e: Any, note: str = "") -> FitOption:
    m, t = e.memory, e.time
    eff = getattr(t, "effective_samples_per_s", None)
    return FitOption(change=change, how=how, kwargs=dict(kwargs), fits=bool(m.fits), gpu_id=e.gpu_id,
                     gpu_name=e.gpu_name, num_gpus=e.num_gpus, memory_per_gpu_bytes=float(m.total_bytes),
                     usable_per_gpu_bytes=float(m.usable_bytes), step_s=float(t.step_s),
                     effective_samples_per_s=float(eff if eff is not None else t.samples_per_s),
                     time_to_train_s=t.time_to_train_s, note=note)


def fit_options(model: Any, gpu: str | GpuSpec, *, num_gpus: int = 1, max_gpus: int = 8,
                specs_dir: str | Path | None = None, base: Any = None, **kwargs: Any) -> FitAdvice:
    """Why ``model`` does not fit on ``num_gpus`` x ``gpu``, and the single changes that make it fit.

    Args:
        model, gpu, num_gpus, specs_dir, kwargs: as for ``advisor.estimator.estimate``.
        max_gpus: largest card count tried for ZeRO-3 / tensor parallel.
        base: the estimate of the workload as given, when the caller has it already.

    Returns:
        ``FitAdvice``; no options when the workload fits as given.

    Raises:
        AdvisorError: the workload as given cannot be estimated at all (bad option, unknown card or model).
    """
    from advisor.api import estimate
    from advisor.estimator import matmul_rate
    from advisor.ranking import gpu_counts

    spec = gpu if isinstance(gpu, GpuSpec) else get_gpu(gpu, specs_dir=specs_dir)

    def run(**changes: Any) -> Any:
        kw = {"num_gpus": num_gpus, **kwargs, **changes}
        card = kw.pop("gpu", spec)
        return estimate(model, card, specs_dir=specs_dir, **kw)

    e = base if base is not None else run()
    if e.memory.fits:
        return FitAdvice(fits=True, why="", options=())
    options: list[FitOption] = []

    def attempt(change: str, how: str, note: str = "", **changes: Any) -> FitOption | None:
        try:
            est = run(**changes)
        except AdvisorError:  # the change does not apply to this model (e.g. LoRA on a CNN)
            return None
        opt = _option(change, how, changes, est, note)
        options.append(opt)
        return opt

    train = kwargs.get("mode", "train") == "train"
    batch = int(kwargs.get("batch_size", 1))
    accum = int(kwargs.get("grad_accum", 1))
    lora = kwargs.get("lora_rank")
    precision = kwargs.get("precision", "amp-bf16")
    optimizer = kwargs.get("optimizer", "adamw")
    dp = max(1, math.ceil(e.batch_size / max(1, e.micro_batch_per_gpu)))

    if train and not kwargs.get("gradient_checkpointing"):
        attempt("gradient checkpointing", "--gradient-checkpointing",
                "recomputes activations in backward: about one more forward pass of compute",
                gradient_checkpointing=True)
    max_b = int(e.memory.max_batch_size or 0)
    if max_b >= dp and batch > dp:
        micro = max(dp, (min(max_b, batch - 1) // dp) * dp)
        k = math.ceil(batch / micro) * accum
        if train:
            attempt("smaller micro-batch + gradient accumulation", f"--batch-size {micro} --grad-accum {k}",
                    f"{micro} x {k} accumulation steps = {micro * k} samples per optimizer step "
                    f"(asked {batch * accum})", batch_size=micro, grad_accum=k)
        else:
            attempt("smaller request batches", f"--batch-size {micro}", f"serve {micro} at a time",
                    batch_size=micro)
    if train and optimizer in ("adam", "adamw") and not lora:
        attempt("8-bit optimizer", "--optimizer adamw-8bit",
                "bitsandbytes AdamW8bit: 2 B/param of state instead of 8; close to AdamW in published results",
                optimizer="adamw-8bit")
    if train and not lora:
        attempt(f"LoRA rank {DEFAULT_LORA_RANK}", f"--lora-rank {DEFAULT_LORA_RANK}",
                "trains low-rank adapters only (base frozen): fine-tuning quality close to full for most tasks",
                lora_rank=DEFAULT_LORA_RANK)
    if train and not kwargs.get("quantize_base"):
        rank = lora or DEFAULT_LORA_RANK
        attempt(f"QLoRA (nf4 base, LoRA rank {rank})", f"--lora-rank {rank} --quantize-base nf4",
                "4-bit frozen base dequantized per matmul: slower steps, near-LoRA quality (QLoRA paper)",
                lora_rank=rank, quantize_base="nf4")
    if not train and precision not in ("int8", "int4"):
        for p, what in (("int8", "8-bit weights (W8A8 / LLM.int8)"), ("int4", "4-bit weights (GPTQ / AWQ)")):
            if attempt(f"{what}", f"--precision {p}", "quantized weights: a small accuracy loss",
                       precision=p) is not None and options[-1].fits:
                break
    # more cards: split the batch (ddp), then also shard the model states (zero3); inference splits the layers (tp)
    more_cards = [n for n in gpu_counts(max_gpus) if n > num_gpus]
    strategies = (("ddp", "data parallel (DDP)", "splits the global batch across the cards; each holds the whole "
                   "model"),
                  ("zero3", "ZeRO-3 / FSDP", "splits the batch and shards weights, gradients and optimizer states "
                   "across the cards")) if train else (("tp", "tensor parallel", "splits every layer across the "
                                                        "cards"),)
    fits_at = math.inf  # sharding is listed only where splitting the batch alone is not enough
    for strategy, what, note in strategies:
        for n in more_cards:
            if n >= fits_at:
                break
            opt = attempt(f"{what} over {n} x {spec.name}", f"--num-gpus {n} --parallelism {strategy}", note,
                          num_gpus=n, parallelism=strategy)
            if opt is not None and opt.fits:
                fits_at = n
                break
    # no single change is enough: checkpointing together with the strongest of the others
    if train and not any(o.fits for o in options) and not kwargs.get("gradient_checkpointing"):
        rank = lora or DEFAULT_LORA_RANK
        if not kwargs.get("quantize_base"):
            qlora = attempt(f"gradient checkpointing + QLoRA (nf4, rank {rank})",
                            f"--gradient-checkpointing --lora-rank {rank} --quantize-base nf4",
                            "both of the above", gradient_checkpointing=True, lora_rank=rank, quantize_base="nf4")
            if qlora is not None and not qlora.fits and batch > dp:
                k = math.ceil(batch / dp) * accum
                attempt(f"gradient checkpointing + QLoRA + micro-batch {dp} with {k} accumulation steps",
                        f"--gradient-checkpointing --lora-rank {rank} --quantize-base nf4 --batch-size {dp} "
                        f"--grad-accum {k}", f"{dp} x {k} = {dp * k} samples per optimizer step",
                        gradient_checkpointing=True, lora_rank=rank, quantize_base="nf4", batch_size=dp,
                        grad_accum=k)
        for n in more_cards:
            opt = attempt(f"gradient checkpointing + ZeRO-3 over {n} x {spec.name}",
                          f"--gradient-checkpointing --num-gpus {n} --parallelism zero3", "both of the above",
                          gradient_checkpointing=True, num_gpus=n, parallelism="zero3")
            if opt is not None and opt.fits:
                break
    # a bigger card, smallest first
    specs = load_specs(extra_dirs=[specs_dir]) if specs_dir is not None else load_specs()
    bigger = sorted((s for s in specs if s.memory_bytes > spec.memory_bytes and matmul_rate(s, precision)),
                    key=lambda s: (s.memory_bytes, s.price_usd or math.inf, s.id))
    for card in bigger:
        try:
            est = run(gpu=card)
        except AdvisorError:
            continue
        if est.memory.fits:
            options.append(_option(f"a bigger card: {card.name}", f"--gpu {card.id}", {"gpu": card.id}, est,
                                   f"{card.memory_gb:g} GB; the smallest card in the catalog that fits"))
            break
    # fitting ones first, fastest (samples/s, so that accumulation's longer steps compare fairly) first
    options.sort(key=lambda o: (not o.fits, -o.effective_samples_per_s if o.fits else o.memory_per_gpu_bytes))
    return FitAdvice(fits=False, why=why_it_does_not_fit(e), options=tuple(options))
