"""What to change when a workload does not fit: one table, shared by ``estimate``, ``recommend`` and the dashboard.

``fit_options(model, gpu, ...)`` estimates the workload as given, says truthfully what does not fit
(the model states alone, or the states plus one sample's activations), then re-estimates it with one
change at a time -- gradient checkpointing, a smaller micro-batch with gradient accumulation, an 8-bit
optimizer, LoRA, QLoRA, ZeRO-3 / tensor parallel over more cards, a bigger card -- and then searches the
combinations of those changes for the smallest ones that fit (fewest changes; a smaller micro-batch is sized
from the combination's own largest batch that fits).  When nothing fits within ``max_gpus``, it goes on to
the smallest setup that would (more cards of the same kind, or the smallest bigger card), so the answer is
never "nothing fits" without the setup that does.  Every row has its per-GPU memory, step time, throughput and
the cards' cloud and purchase price.  Every number comes from ``advisor.estimator.estimate``: nothing here has a
memory or time formula of its own.

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
from advisor.ranking import BEYOND_MAX_GPUS

#: LoRA rank suggested when the user gave none (the PEFT examples' and QLoRA paper's common choice).
DEFAULT_LORA_RANK = 16

FIT_COLUMNS: tuple[str, ...] = ("change", "how", "fits", "gpu_id", "gpu_name", "num_gpus", "memory_per_gpu_gib",
                                "usable_per_gpu_gib", "step_s", "effective_samples_per_s", "time_to_train_s",
                                "cloud_usd_per_hour", "price_usd", "levers", "note")
_GIB = 1024**3
#: One part of a combination tried: (its levers, its estimate keywords, its words, its CLI flags).
_Combo = tuple[tuple[str, ...], dict[str, Any], str, str]


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
        levers: the changes combined in this row (``checkpointing``, ``micro-batch``, ``8-bit optimizer``, ``LoRA``,
            ``QLoRA``, ``int8``/``int4``, ``N cards``, ``bigger card``); fewer is a smaller change.
        cloud_usd_per_hour / price_usd: the row's cards at on-demand rates and to buy (``None`` without a price).
        beyond_max_gpus: the row needs more cards than ``max_gpus`` (offered only when nothing fits within it).
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
    levers: tuple[str, ...] = ()
    cloud_usd_per_hour: float | None = None
    price_usd: float | None = None
    beyond_max_gpus: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        out = dataclasses.asdict(self)
        out["kwargs"] = dict(self.kwargs)
        out["levers"] = list(self.levers)
        return out


@dataclass(frozen=True, slots=True)
class FitAdvice:
    """Whether a workload fits, why not, and the changes that would make it fit.

    Attributes:
        fits: the workload as given fits.
        why: what does not fit, with the numbers (empty when it fits).
        options: one row per change tried, the ones that fit first (fewest changes, then fastest), then the rest.
    """

    fits: bool
    why: str
    options: tuple[FitOption, ...]

    @property
    def smallest(self) -> FitOption | None:
        """The smallest setup that fits (fewest changes, then fastest), ``None`` when the workload fits as given."""
        return next((o for o in self.options if o.fits), None)

    @property
    def fitting(self) -> tuple[FitOption, ...]:
        """The options that fit."""
        return tuple(o for o in self.options if o.fits)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (``estimate --json``'s ``fit_options`` key)."""
        smallest = self.smallest
        return {"fits": self.fits, "why": self.why, "options": [o.to_dict() for o in self.options],
                "smallest": smallest.to_dict() if smallest is not None else None}

    def to_frame(self) -> Any:
        """The options as a pandas DataFrame (columns ``FIT_COLUMNS``; sizes in GiB)."""
        import pandas as pd

        rows = [{"change": o.change, "how": o.how, "fits": o.fits, "gpu_id": o.gpu_id, "gpu_name": o.gpu_name,
                 "num_gpus": o.num_gpus, "memory_per_gpu_gib": o.memory_per_gpu_bytes / _GIB,
                 "usable_per_gpu_gib": o.usable_per_gpu_bytes / _GIB, "step_s": o.step_s,
                 "effective_samples_per_s": o.effective_samples_per_s, "time_to_train_s": o.time_to_train_s,
                 "cloud_usd_per_hour": o.cloud_usd_per_hour, "price_usd": o.price_usd,
                 "levers": " + ".join(o.levers), "note": o.note} for o in self.options]
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


def _option(change: str, how: str, kwargs: Mapping[str, Any], e: Any, note: str = "",
            levers: tuple[str, ...] = (), spec: GpuSpec | None = None, beyond: bool = False) -> FitOption:
    m, t = e.memory, e.time
    eff = getattr(t, "effective_samples_per_s", None)
    n = int(e.num_gpus)
    hourly = spec.cloud_usd_per_hour if spec is not None else None
    price = spec.price_usd if spec is not None else None
    return FitOption(change=change, how=how, kwargs=dict(kwargs), fits=bool(m.fits), gpu_id=e.gpu_id,
                     gpu_name=e.gpu_name, num_gpus=n, memory_per_gpu_bytes=float(m.total_bytes),
                     usable_per_gpu_bytes=float(m.usable_bytes), step_s=float(t.step_s),
                     effective_samples_per_s=float(eff if eff is not None else t.samples_per_s),
                     time_to_train_s=t.time_to_train_s, note=note, levers=levers,
                     cloud_usd_per_hour=hourly * n if hourly else None, price_usd=price * n if price else None,
                     beyond_max_gpus=beyond)


def _micro(batch: int, dp: int, max_batch: int | None) -> int | None:
    """The largest micro-batch (a multiple of the ``dp`` replicas, below ``batch``) within ``max_batch``."""
    if not max_batch or max_batch < dp or batch <= dp:
        return None
    return max(dp, (min(int(max_batch), batch - 1) // dp) * dp)


def _cards(levers: tuple[str, ...]) -> int:
    """The card count a row's levers ask for (``"4 x zero3"`` -> 4), 0 when it keeps the cards."""
    return max((int(lv.partition(" x ")[0]) for lv in levers if lv.partition(" x ")[0].isdigit()), default=0)


def _covers(small: tuple[str, ...], big: tuple[str, ...]) -> bool:
    """Whether the changes ``small`` are among ``big``: the same changes, and no more cards (any strategy)."""
    plain = {lv for lv in small if not lv.partition(" x ")[0].isdigit()}
    need = _cards(small)
    return plain <= set(big) and (need == 0 or _cards(big) >= need)


def _weight(option: FitOption) -> tuple[int, int]:
    """How big a change a row is: software changes count 1, more or other cards 2; the same cards first."""
    hardware = [lv for lv in option.levers if lv == "bigger card" or lv.partition(" x ")[0].isdigit()]
    return len(option.levers) + len(hardware), len(hardware)


def fit_options(model: Any, gpu: str | GpuSpec, *, num_gpus: int = 1, max_gpus: int = 8,
                specs_dir: str | Path | None = None, base: Any = None, **kwargs: Any) -> FitAdvice:
    """Why ``model`` does not fit on ``num_gpus`` x ``gpu``, and the smallest changes that make it fit.

    Single changes first (each on its own, fitting or not, so the table says what each one gives), then the
    combinations: gradient checkpointing x {nothing, an 8-bit optimizer, LoRA, QLoRA} (inference: int8 / int4
    weights) x {these cards, ZeRO-3 (inference: tensor parallel) over more of them}, each with a smaller
    micro-batch and gradient accumulation when only the batch is too large.  A combination is listed only when
    no smaller one (a subset of its changes) fits.  When nothing fits within ``max_gpus``, the smallest setup
    that would is added: more of the same card (up to ``BEYOND_MAX_GPUS``) and the smallest bigger card.

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
    cache: dict[str, Any] = {}

    def run(**changes: Any) -> Any:
        kw = {"num_gpus": num_gpus, **kwargs, **changes}
        key = repr(sorted((k, v.id if isinstance(v, GpuSpec) else v) for k, v in kw.items()))
        if key not in cache:
            card = kw.pop("gpu", spec)
            try:
                cache[key] = estimate(model, card, specs_dir=specs_dir, **kw)
            except AdvisorError as exc:
                cache[key] = exc
        result = cache[key]
        if isinstance(result, AdvisorError):
            raise result
        return result

    e = base if base is not None else run()
    if e.memory.fits:
        return FitAdvice(fits=True, why="", options=())
    options: list[FitOption] = []

    def attempt(change: str, how: str, note: str = "", levers: tuple[str, ...] = (), card: GpuSpec | None = None,
                beyond: bool = False, **changes: Any) -> FitOption | None:
        try:
            est = run(**changes)
        except AdvisorError:  # the change does not apply to this model (e.g. LoRA on a CNN)
            return None
        opt = _option(change, how, changes, est, note, levers or (change,), card or spec, beyond)
        options.append(opt)
        return opt

    train = kwargs.get("mode", "train") == "train"
    batch = int(kwargs.get("batch_size", 1))
    accum = int(kwargs.get("grad_accum", 1))
    lora = kwargs.get("lora_rank")
    precision = kwargs.get("precision", "amp-bf16")
    optimizer = kwargs.get("optimizer", "adamw")
    dp = max(1, math.ceil(e.batch_size / max(1, e.micro_batch_per_gpu)))
    rank = lora or DEFAULT_LORA_RANK

    # what each change is: (lever, words, flags, note, estimate keywords)
    ckpt: tuple[str, str, str, str, dict[str, Any]] = (
        "checkpointing", "gradient checkpointing", "--gradient-checkpointing",
        "recomputes activations in backward: about one more forward pass of compute", {"gradient_checkpointing": True})
    model_levers: list[tuple[str, str, str, str, dict[str, Any]]] = []
    if train and optimizer in ("adam", "adamw") and not lora:
        model_levers.append(("8-bit optimizer", "8-bit optimizer", "--optimizer adamw-8bit",
                             "bitsandbytes AdamW8bit: 2 B/param of state instead of 8; close to AdamW in published "
                             "results", {"optimizer": "adamw-8bit"}))
    if train and not lora:
        model_levers.append(("LoRA", f"LoRA rank {DEFAULT_LORA_RANK}", f"--lora-rank {DEFAULT_LORA_RANK}",
                             "trains low-rank adapters only (base frozen): fine-tuning quality close to full for most "
                             "tasks", {"lora_rank": DEFAULT_LORA_RANK}))
    if train and not kwargs.get("quantize_base"):
        model_levers.append(("QLoRA", f"QLoRA (nf4 base, LoRA rank {rank})", f"--lora-rank {rank} --quantize-base nf4",
                             "4-bit frozen base dequantized per matmul: slower steps, near-LoRA quality (QLoRA paper)",
                             {"lora_rank": rank, "quantize_base": "nf4"}))
    if not train and precision not in ("int8", "int4"):
        model_levers += [(p, what, f"--precision {p}", "quantized weights: a small accuracy loss", {"precision": p})
                         for p, what in (("int8", "8-bit weights (W8A8 / LLM.int8)"),
                                         ("int4", "4-bit weights (GPTQ / AWQ)"))]

    # 1. one change at a time (what each gives on its own)
    if train and not kwargs.get("gradient_checkpointing"):
        attempt(ckpt[1], ckpt[2], ckpt[3], (ckpt[0],), **ckpt[4])
    micro = _micro(batch, dp, e.memory.max_batch_size)
    if micro is not None:
        k = math.ceil(batch / micro) * accum
        if train:
            attempt("smaller micro-batch + gradient accumulation", f"--batch-size {micro} --grad-accum {k}",
                    f"{micro} x {k} accumulation steps = {micro * k} samples per optimizer step "
                    f"(asked {batch * accum})", ("micro-batch",), batch_size=micro, grad_accum=k)
        else:
            attempt("smaller request batches", f"--batch-size {micro}", f"serve {micro} at a time",
                    ("micro-batch",), batch_size=micro)
    for lever, what, how, note, kw in model_levers:
        opt = attempt(what, how, note, (lever,), **kw)
        if not train and opt is not None and opt.fits:
            break  # int8 fits: int4 is not needed
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
                          (f"{n} x {strategy}",), num_gpus=n, parallelism=strategy)
            if opt is not None and opt.fits:
                fits_at = n
                break

    # 2. combinations, fewest changes first; one is listed only when no smaller combination fits
    shard = "zero3" if train else "tp"
    sw_first: list[_Combo] = [((), {}, "", "")]
    if train and not kwargs.get("gradient_checkpointing"):
        sw_first.append(((ckpt[0],), ckpt[4], ckpt[1], ckpt[2]))
    sw_second: list[_Combo] = [((), {}, "", "")] + [((lv,), kw, what, how) for lv, what, how, _, kw in model_levers]
    hardware: list[_Combo] = [((), {}, "", "")] + [
        ((f"{n} x {shard}",), {"num_gpus": n, "parallelism": shard},
         f"{'ZeRO-3' if train else 'tensor parallel'} over {n} x {spec.name}", f"--num-gpus {n} --parallelism {shard}")
        for n in more_cards]
    combos = []
    for a in sw_first:
        for b in sw_second:
            for h in hardware:
                levers = a[0] + b[0] + h[0]
                if levers:
                    combos.append((levers, {**a[1], **b[1], **h[1]}, [p for p in (a[2], b[2], h[2]) if p],
                                   [p for p in (a[3], b[3], h[3]) if p]))
    combos.sort(key=lambda c: len(c[0]))

    def found(levers: tuple[str, ...]) -> bool:
        return any(o.fits and _covers(o.levers, levers) for o in options)

    for levers, kw, words, flags in combos:
        if found(levers):
            continue
        try:
            est = run(**kw)
        except AdvisorError:
            continue
        if est.memory.fits:
            if len(levers) > 1:
                attempt(" + ".join(words), " ".join(flags), "the changes above, together", levers, **kw)
            continue
        if found((*levers, "micro-batch")):
            continue
        n = kw.get("num_gpus", num_gpus)
        replicas = n if kw.get("parallelism", "ddp") != "tp" and n > 1 else dp
        m = _micro(batch, replicas, est.memory.max_batch_size)
        if m is None:
            continue
        k = math.ceil(batch / m) * accum
        step = "accumulation steps" if train else "requests at a time"
        changes: dict[str, Any] = {**kw, "batch_size": m, **({"grad_accum": k} if train else {})}
        opt = attempt(" + ".join([*words, f"micro-batch {m} x {k} {step}" if train else f"batches of {m}"]),
                      " ".join([*flags, f"--batch-size {m}"] + ([f"--grad-accum {k}"] if train else [])),
                      f"{m} x {k} = {m * k} samples per optimizer step (asked {batch * accum})" if train else
                      f"serve {m} at a time", (*levers, "micro-batch"), **changes)
        if opt is not None and not opt.fits:
            options.remove(opt)  # the micro-batch was sized to fit: a miss here is rounding, not a lever

    # 3. a bigger card, smallest first (as given; else with checkpointing)
    specs = load_specs(extra_dirs=[specs_dir]) if specs_dir is not None else load_specs()
    bigger = sorted((s for s in specs if s.memory_bytes > spec.memory_bytes and matmul_rate(s, precision)),
                    key=lambda s: (s.memory_bytes, s.price_usd or math.inf, s.id))

    def bigger_card(extra: dict[str, Any], words: str, flags: str, levers: tuple[str, ...]) -> bool:
        for card in bigger:
            try:
                est = run(gpu=card, **extra)
            except AdvisorError:
                continue
            if est.memory.fits:
                options.append(_option(f"a bigger card: {card.name}" + (f" + {words}" if words else ""),
                                       f"--gpu {card.id}" + (f" {flags}" if flags else ""), {"gpu": card.id, **extra},
                                       est, f"{card.memory_gb:g} GB; the smallest card in the catalog that fits"
                                       + (" with these changes" if words else ""), ("bigger card", *levers), card))
                return True
        return False

    if not bigger_card({}, "", "", ()) and train and not kwargs.get("gradient_checkpointing"):
        bigger_card(ckpt[4], ckpt[1], ckpt[2], (ckpt[0],))

    # 4. nothing fits within max_gpus: the smallest setup that would (more of these cards, the method kept first;
    # then with QLoRA / int4 weights), and the smallest bigger card for each
    if not any(o.fits for o in options):
        use_ckpt = train and not kwargs.get("gradient_checkpointing")
        first = ((ckpt[0],), ckpt[4], [ckpt[1]], [ckpt[2]]) if use_ckpt else ((), {}, [], [])
        setups = [first] + [((*first[0], lv), {**first[1], **kw}, [*first[2], what], [*first[3], how])
                            for lv, what, how, _, kw in model_levers if lv in ("QLoRA", "int4")]
        for levers, kw, words, flags in setups:
            n = max(max_gpus, num_gpus) * 2
            while n <= BEYOND_MAX_GPUS:
                try:
                    est = run(**kw, num_gpus=n, parallelism=shard)
                except AdvisorError:
                    break
                if est.memory.fits:
                    options.append(_option(
                        " + ".join([*words, f"{'ZeRO-3' if train else 'tensor parallel'} over {n} x {spec.name}"]),
                        " ".join([*flags, f"--num-gpus {n} --parallelism {shard}"]),
                        {**kw, "num_gpus": n, "parallelism": shard}, est,
                        f"more cards than --max-gpus {max_gpus}: the smallest count of this card that fits",
                        (*levers, f"{n} x {shard}"), spec, beyond=True))
                    break
                n *= 2
            if levers and not any(o.fits and "bigger card" in o.levers for o in options):
                bigger_card(kw, " + ".join(words), " ".join(flags), levers)
    # fitting ones first: the smallest change (software before hardware), then the fastest (samples/s, so that
    # accumulation's longer steps compare fairly); then the rest, smallest memory first
    options.sort(key=lambda o: (not o.fits, o.beyond_max_gpus, _weight(o) if o.fits else (0, 0),
                                -o.effective_samples_per_s if o.fits else o.memory_per_gpu_bytes))
    return FitAdvice(fits=False, why=why_it_does_not_fit(e), options=tuple(options))
