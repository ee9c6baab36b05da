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
import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from advisor.catalog import GpuSpec, get_gpu, load_specs
from advisor.errors import AdvisorError
from advisor.fit_levers import (
    CHECKPOINTING,
    DEFAULT_LORA_RANK,
    NO_CHANGE,
    Combo,
    Lever,
    card_strategies,
    combinations,
    covers,
    micro_batch,
    model_levers,
    shard_words,
    weight,
)
from advisor.ranking import BEYOND_MAX_GPUS

__all__ = ["DEFAULT_LORA_RANK", "FIT_COLUMNS", "FitAdvice", "FitOption", "fit_options", "why_it_does_not_fit"]

FIT_COLUMNS: tuple[str, ...] = ("change", "how", "fits", "gpu_id", "gpu_name", "num_gpus", "memory_per_gpu_gib",
                                "usable_per_gpu_gib", "step_s", "effective_samples_per_s", "time_to_train_s",
                                "cloud_usd_per_hour", "price_usd", "levers", "note")
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
             f"{_gib(b.get('gradients', 0.0))}, optimizer {_gib(b.get('optimizer', 0.0))}); at "
             f"{e.micro_batch_per_gpu} per GPU: " + _rest(m, b, per_step))
    if states > usable:
        return f"{head}: the model states alone ({_gib(states)}) exceed it; {split}"
    if m.max_batch_size:
        return (f"{head}: {split}; the largest global batch that fits is {m.max_batch_size} (asked "
                f"{e.batch_size})")
    return (f"{head}: the model states ({_gib(states)}) fit, but not with one sample's activations and the "
            f"overhead: not even batch 1 per GPU fits; {split}")


def _rest(m: Any, b: Mapping[str, float], per_step: float) -> str:
    """The memory beyond the model states, in the categories ``estimate``'s table prints (else the coarse split)."""
    cats = getattr(m, "categories_bytes", None) or {}
    rest = [f"{k} {_gib(v)}" for k, v in cats.items() if k not in ("weights", "gradients", "optimizer states")]
    if rest:
        return "; ".join(rest)
    return ("activations" + (" + KV cache" if b.get("kv_cache") else "") + f" {_gib(per_step)}, overhead "
            f"{_gib(b.get('overhead', 0.0))}")


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
    spec = gpu if isinstance(gpu, GpuSpec) else get_gpu(gpu, specs_dir=specs_dir)
    search = _FitSearch(model, spec, num_gpus, max_gpus, specs_dir, kwargs)
    e = base if base is not None else search.run()
    if e.memory.fits:
        return FitAdvice(fits=True, why="", options=())
    search.dp = max(1, math.ceil(e.batch_size / max(1, e.micro_batch_per_gpu)))  # the data-parallel replicas
    search.single_changes(e)
    search.combinations()
    if not search.bigger_card() and search.checkpointing:  # a bigger card as given; else with checkpointing
        search.bigger_card(CHECKPOINTING.combo())
    if not any(o.fits for o in search.options):
        search.beyond_max_gpus()
    # fitting ones first: the smallest change (software before hardware), then the fastest (samples/s, so that
    # accumulation's longer steps compare fairly); then the rest, smallest memory first
    options = sorted(search.options, key=lambda o: (not o.fits, o.beyond_max_gpus,
                                                    weight(o.levers) if o.fits else (0, 0),
                                                    -o.effective_samples_per_s if o.fits else o.memory_per_gpu_bytes))
    return FitAdvice(fits=False, why=why_it_does_not_fit(e), options=tuple(options))


class _FitSearch:
    """One fit search: the job as given, the estimates made (each once), and the rows found so far."""

    def __init__(self, model: Any, spec: GpuSpec, num_gpus: int, max_gpus: int, specs_dir: str | Path | None,
                 kwargs: Mapping[str, Any]) -> None:
        from advisor.ranking import gpu_counts

        self.model, self.spec, self.num_gpus, self.max_gpus, self.specs_dir = model, spec, num_gpus, max_gpus, specs_dir
        self.kwargs = kwargs
        self.train = kwargs.get("mode", "train") == "train"
        self.batch = int(kwargs.get("batch_size", 1))
        self.accum = int(kwargs.get("grad_accum", 1))
        self.precision = kwargs.get("precision", "amp-bf16")
        #: gradient checkpointing is a change to try (training, and not already on)
        self.checkpointing = self.train and not kwargs.get("gradient_checkpointing")
        self.levers: list[Lever] = model_levers(train=self.train, optimizer=kwargs.get("optimizer", "adamw"),
                                                lora=kwargs.get("lora_rank"), quantize_base=kwargs.get("quantize_base"),
                                                precision=self.precision)
        self.more_cards = [n for n in gpu_counts(max_gpus) if n > num_gpus]
        self.shard = "zero3" if self.train else "tp"
        #: data-parallel replicas of the job as given (set from its estimate)
        self.dp = 1
        self.options: list[FitOption] = []
        self._cache: dict[str, Any] = {}

    def run(self, **changes: Any) -> Any:
        """``estimate`` of the job with ``changes`` (each distinct one made once; its error raised again)."""
        from advisor.api import estimate

        kw = {"num_gpus": self.num_gpus, **self.kwargs, **changes}
        key = repr(sorted((k, v.id if isinstance(v, GpuSpec) else v) for k, v in kw.items()))
        if key not in self._cache:
            card = kw.pop("gpu", self.spec)
            try:
                self._cache[key] = estimate(self.model, card, specs_dir=self.specs_dir, **kw)
            except AdvisorError as exc:
                self._cache[key] = exc
        result = self._cache[key]
        if isinstance(result, AdvisorError):
            raise result
        return result

    def attempt(self, change: str, how: str, note: str = "", levers: tuple[str, ...] = (),
                **changes: Any) -> FitOption | None:
        """Estimate one change and list it, fitting or not (``None``: it does not apply, e.g. LoRA on a CNN)."""
        try:
            est = self.run(**changes)
        except AdvisorError:
            return None
        opt = _option(change, how, changes, est, note, levers or (change,), self.spec)
        self.options.append(opt)
        return opt

    def fitting_micro(self, batch: int, replicas: int, est: Any, kw: dict[str, Any]) -> int | None:
        """The micro-batch sized from ``est``'s largest batch that fits, re-sized from its own while it misses.

        The largest batch scales the allocator's replayed share linearly, which the step at a smaller micro-batch (and
        with gradients accumulated) need not follow.
        """
        m = micro_batch(batch, replicas, est.memory.max_batch_size)
        for _ in range(3):
            if m is None:
                return None
            extra = {"grad_accum": math.ceil(batch / m) * self.accum} if self.train else {}
            try:
                at_m = self.run(**{**kw, "batch_size": m, **extra})
            except AdvisorError:
                return m
            smaller = micro_batch(batch, replicas, at_m.memory.max_batch_size)
            if at_m.memory.fits or smaller is None or smaller >= m:
                return m
            m = smaller
        return m

    def single_changes(self, e: Any) -> None:
        """One change at a time (what each gives on its own): checkpointing, a micro-batch, each lever, more cards."""
        train, batch = self.train, self.batch
        if self.checkpointing:
            ck = CHECKPOINTING
            self.attempt(ck.words, ck.flags, ck.note, (ck.lever,), **ck.kwargs)
        micro = self.fitting_micro(batch, self.dp, e, {})
        if micro is not None:
            k = math.ceil(batch / micro) * self.accum
            if train:
                self.attempt("smaller micro-batch + gradient accumulation", f"--batch-size {micro} --grad-accum {k}",
                             f"{micro} x {k} accumulation steps = {micro * k} samples per optimizer step "
                             f"(asked {batch * self.accum})", ("micro-batch",), batch_size=micro, grad_accum=k)
            else:
                self.attempt("smaller request batches", f"--batch-size {micro}", f"serve {micro} at a time",
                             ("micro-batch",), batch_size=micro)
        for lever in self.levers:
            opt = self.attempt(lever.words, lever.flags, lever.note, (lever.lever,), **lever.kwargs)
            if not train and opt is not None and opt.fits:
                break  # int8 fits: int4 is not needed
        # more cards: split the batch (ddp), then also shard the model states (zero3); inference splits the layers
        fits_at = math.inf  # sharding is listed only where splitting the batch alone is not enough
        for strategy, what, note in card_strategies(train):
            for n in self.more_cards:
                if n >= fits_at:
                    break
                opt = self.attempt(f"{what} over {n} x {self.spec.name}", f"--num-gpus {n} --parallelism {strategy}",
                                   note, (f"{n} x {strategy}",), num_gpus=n, parallelism=strategy)
                if opt is not None and opt.fits:
                    fits_at = n
                    break

    def _found(self, levers: tuple[str, ...]) -> bool:
        return any(o.fits and covers(o.levers, levers) for o in self.options)

    def combinations(self) -> None:
        """The combinations, fewest changes first; one is listed only when no smaller combination fits."""
        for combo in combinations(train=self.train, checkpointing=self.checkpointing, levers=self.levers,
                                  more_cards=self.more_cards, card_name=self.spec.name):
            if self._found(combo.levers):
                continue
            try:
                est = self.run(**combo.kwargs)
            except AdvisorError:
                continue
            if est.memory.fits:
                if len(combo.levers) > 1:
                    self.attempt(" + ".join(combo.words), " ".join(combo.flags), "the changes above, together",
                                 combo.levers, **combo.kwargs)
                continue
            if not self._found((*combo.levers, "micro-batch")):
                self._with_micro_batch(combo, est)

    def _with_micro_batch(self, combo: Combo, est: Any) -> None:
        """A combination that fits only with a smaller micro-batch: sized from its own largest batch that fits."""
        train, batch, kw = self.train, self.batch, combo.kwargs
        n = kw.get("num_gpus", self.num_gpus)
        replicas = n if kw.get("parallelism", "ddp") != "tp" and n > 1 else self.dp
        m = self.fitting_micro(batch, replicas, est, kw)
        if m is None:
            return
        k = math.ceil(batch / m) * self.accum
        step = "accumulation steps" if train else "requests at a time"
        changes: dict[str, Any] = {**kw, "batch_size": m, **({"grad_accum": k} if train else {})}
        opt = self.attempt(" + ".join([*combo.words, f"micro-batch {m} x {k} {step}" if train else f"batches of {m}"]),
                           " ".join([*combo.flags, f"--batch-size {m}"] + ([f"--grad-accum {k}"] if train else [])),
                           f"{m} x {k} = {m * k} samples per optimizer step (asked {batch * self.accum})" if train
                           else f"serve {m} at a time", (*combo.levers, "micro-batch"), **changes)
        if opt is not None and not opt.fits:
            self.options.remove(opt)  # the micro-batch was sized to fit: a miss here is rounding, not a lever

    @functools.cached_property
    def bigger_cards(self) -> list[GpuSpec]:
        """The catalog's cards with more memory that run the precision, smallest (then cheapest) first."""
        from advisor.estimator import matmul_rate

        specs = load_specs(extra_dirs=[self.specs_dir]) if self.specs_dir is not None else load_specs()
        return sorted((s for s in specs if s.memory_bytes > self.spec.memory_bytes and matmul_rate(s, self.precision)),
                      key=lambda s: (s.memory_bytes, s.price_usd or math.inf, s.id))

    def bigger_card(self, combo: Combo = NO_CHANGE) -> bool:
        """The smallest bigger card that fits with ``combo``'s changes, listed; whether one was found."""
        words, flags = " + ".join(combo.words), " ".join(combo.flags)
        for card in self.bigger_cards:
            try:
                est = self.run(gpu=card, **combo.kwargs)
            except AdvisorError:
                continue
            if est.memory.fits:
                self.options.append(_option(
                    f"a bigger card: {card.name}" + (f" + {words}" if words else ""),
                    f"--gpu {card.id}" + (f" {flags}" if flags else ""), {"gpu": card.id, **combo.kwargs}, est,
                    f"{card.memory_gb:g} GB; the smallest card in the catalog that fits"
                    + (" with these changes" if words else ""), ("bigger card", *combo.levers), card))
                return True
        return False

    def beyond_max_gpus(self) -> None:
        """Nothing fits within max_gpus: the smallest setup that would.

        More of these cards (the method kept first; then with QLoRA / int4 weights), and the smallest bigger card
        for each.
        """
        first = CHECKPOINTING.combo() if self.checkpointing else NO_CHANGE
        setups = [first] + [Combo((*first.levers, lv.lever), {**first.kwargs, **lv.kwargs}, [*first.words, lv.words],
                                  [*first.flags, lv.flags]) for lv in self.levers if lv.lever in ("QLoRA", "int4")]
        for setup in setups:
            self._more_cards(setup)
            if setup.levers and not any(o.fits and "bigger card" in o.levers for o in self.options):
                self.bigger_card(setup)

    def _more_cards(self, setup: Combo) -> None:
        """The smallest count of this card past max_gpus (doubling, up to ``BEYOND_MAX_GPUS``) that fits ``setup``."""
        shard = self.shard
        n = max(self.max_gpus, self.num_gpus) * 2
        while n <= BEYOND_MAX_GPUS:
            try:
                est = self.run(**setup.kwargs, num_gpus=n, parallelism=shard)
            except AdvisorError:
                return
            if est.memory.fits:
                self.options.append(_option(
                    " + ".join([*setup.words, f"{shard_words(self.train)} over {n} x {self.spec.name}"]),
                    " ".join([*setup.flags, f"--num-gpus {n} --parallelism {shard}"]),
                    {**setup.kwargs, "num_gpus": n, "parallelism": shard}, est,
                    f"more cards than --max-gpus {self.max_gpus}: the smallest count of this card that fits",
                    (*setup.levers, f"{n} x {shard}"), self.spec, beyond=True))
                return
            n *= 2
