"""The workload options: what one step of a model is, in one frozen record.

``estimate()``, ``recommend()``, the CLI's workload flags and the dashboard all describe a workload with the
same keywords (batch, sequence, precision, optimizer, mode, LoRA, ...).  ``WorkloadOptions`` is that list,
with its defaults and its checks, in one place: the public functions keep their keyword arguments and
build one of these; the builders in ``advisor.workload`` take its ``builder_kwargs()``, and the analytic
transformer builder (``advisor.workload.transformer.build_transformer``) takes its fields as its keywords, or the
record itself (``options=``).  What a builder built beyond the ``Workload``'s own fields comes back as
``BuiltOptions`` (``Workload.options``), whose options shared with ``WorkloadOptions`` have the same defaults and
checks (``_check_counts``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from advisor.errors import AdvisorError, EstimateError, WorkloadError
from advisor.numbers import real_number, show, whole_number
from advisor.optimizers import OPTIMIZER_NAMES
from advisor.records import json_fields

if TYPE_CHECKING:
    from advisor.workload.base import Workload

PRECISIONS: tuple[str, ...] = ("fp32", "tf32", "fp16", "bf16", "amp-fp16", "amp-bf16", "fp8", "int8", "int4")
#: Optimizer names: the update and how its kernels are issued (``advisor.optimizers``: foreach, fused, a per-parameter
#: loop; ``adamw-hf`` and ``bertadam`` are Hugging Face's and NVIDIA's BERT loops).
OPTIMIZERS: tuple[str, ...] = tuple(OPTIMIZER_NAMES)
MODES: tuple[str, ...] = ("train", "infer")
#: Multi-GPU strategies (``advisor.estimator.parallel`` prices them).
PARALLELISMS: tuple[str, ...] = ("ddp", "zero1", "zero2", "zero3", "fsdp", "tp", "ep")
#: How a named transformer (preset, config.json, Hub id) is priced (``advisor.workload.door``; docs/doors.md).
DOORS: tuple[str, ...] = ("closed", "trace")

#: ``quantize_base`` values the analytic transformer builder models (a frozen base at 4-bit NormalFloat or int8).
BUILDER_QUANTIZE_BASES = ("nf4", "int8")
#: ``quantize_base`` values ``estimate()``, ``recommend()`` and the CLI accept (QLoRA's 4-bit NormalFloat base).
QUANTIZE_BASES = ("nf4",)

#: The accepted range of every count a workload or job is described by (the one home of these checks).  The upper
#: bounds are far beyond any real job (16M samples per step, 16M tokens of context, 131,072 GPUs) and keep the
#: estimator's products finite and its loops short.
COUNT_LIMITS: dict[str, tuple[int, int]] = {
    "batch_size": (1, 2**24),
    "seq_len": (1, 2**24),
    "decoder_len": (1, 2**24),  # an encoder-decoder's decoder tokens: the sequence's range
    "image_size": (1, 2**15),
    "lora_rank": (1, 2**16),
    "grad_accum": (1, 2**20),
    "gen_len": (0, 2**24),
    "num_gpus": (1, 2**17),
    "max_gpus": (1, 1024),  # recommend's largest card count tried (its loops try counts up to it)
    "dataset_samples": (1, 10**30),  # the bound of every job figure (``MAX_JOB_FIGURE``)
}
#: The longest job ``epochs`` may describe.
MAX_EPOCHS = 1e6
#: The largest job figure (``dataset_samples``, ``total_tokens``, ``loader_samples_per_s``) accepted.
MAX_JOB_FIGURE = 1e30


class OptionError(EstimateError, WorkloadError):
    """A workload option out of range: an estimate's bad input and a workload builder's alike."""


def check_count(name: str, value: Any, *, error: type[EstimateError] = OptionError) -> int:
    """``value`` if it is a whole number in ``COUNT_LIMITS[name]``; else ``error`` naming it and the range.

    Raises:
        OptionError: not an int (a bool, float or string is refused), or out of range.
    """
    low, high = COUNT_LIMITS[name]
    return whole_number(name, value, minimum=low, maximum=high, error=error)


def check_door(door: Any) -> str:
    """``door`` if it is one of ``DOORS``.

    Raises:
        OptionError: anything else, naming the accepted values.
    """
    if not isinstance(door, str) or door not in DOORS:
        raise OptionError(f"unknown door {show(door)}",
                          hint=f"accepted: {', '.join(DOORS)} (closed: the closed-form builder, the default; trace: "
                          "the transformers module built from the config and traced, needs gpu-advisor[hf]; "
                          "docs/doors.md)")
    return door


def _check_counts(record: Any, given: tuple[str, ...], optional: tuple[str, ...]) -> None:
    """``check_count`` on each of ``record``'s fields ``given``, and on each of ``optional`` that is not ``None``."""
    for name in given + optional:
        value = getattr(record, name)
        if value is not None or name in given:  # an optional one: None is "not given"
            check_count(name, value)


@dataclass(frozen=True, slots=True)
class WorkloadOptions:
    """One step of a model: the workload keywords of ``estimate``, ``recommend`` and the CLI.

    Attributes:
        batch_size: GLOBAL batch of one micro-step across data-parallel replicas (samples).
        seq_len: tokens per sample (language models; ``None``: the model's default).
        image_size: input side in pixels (vision models; ``None``: the preset's own).
        precision: one of ``advisor.workload.options.PRECISIONS``.
        optimizer: one of ``OPTIMIZERS`` (training), or ``None``.
        mode: ``train`` or ``infer``.
        gradient_checkpointing: recompute activations in backward.
        lora_rank: train LoRA adapters of this rank only (``None``: full training).
        quantize_base: quantize the frozen base (``nf4``: QLoRA).
        grad_accum: micro-batches per optimizer step.
        gen_len: tokens generated per request (infer of causal LMs; ``None``: the builder's default).
        door: how a named transformer is priced: ``closed`` (the closed-form builder) or ``trace`` (its transformers
            module traced; ``advisor.workload.door``, docs/doors.md).
    """

    batch_size: int = 1
    seq_len: int | None = None
    image_size: int | None = None
    precision: str = "amp-bf16"
    optimizer: str | None = "adamw"
    mode: str = "train"
    gradient_checkpointing: bool = False
    lora_rank: int | None = None
    quantize_base: str | None = None
    grad_accum: int = 1
    gen_len: int | None = None
    door: str = "closed"

    def __post_init__(self) -> None:
        """Every count is checked when the record is made, so no path builds a workload from a bad one.

        Raises:
            OptionError: a count that is not a whole number in its ``COUNT_LIMITS`` range, or an unknown door.
        """
        _check_counts(self, ("batch_size", "grad_accum"), ("seq_len", "image_size", "lora_rank", "gen_len"))
        check_door(self.door)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The option names, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def keywords(self) -> dict[str, Any]:
        """The options as keyword arguments of ``estimate()`` / ``recommend()`` (every field)."""
        return {name: getattr(self, name) for name in self.names()}

    def validate(self, *, num_gpus: Any = 1, epochs: Any = 1, **job: Any) -> None:
        """Reject bad counts and unknown choices, with the accepted values named.

        The job's ``num_gpus`` and ``epochs`` are checked in the same pass, so the first bad input is the one
        reported; so are ``job`` figures given (``dataset_samples``, ``total_tokens``, ``loader_samples_per_s``:
        finite and > 0 when not ``None``).

        Raises:
            EstimateError: a count outside ``COUNT_LIMITS``, an unknown precision, optimizer or mode, or epochs
                not in (0, ``MAX_EPOCHS``].
        """
        check_count("num_gpus", num_gpus)
        if self.precision not in PRECISIONS:
            raise EstimateError(f"unknown precision {self.precision!r}", hint=f"accepted: {', '.join(PRECISIONS)}")
        if self.optimizer is not None and self.optimizer not in OPTIMIZERS:
            raise EstimateError(f"unknown optimizer {self.optimizer!r}", hint=f"accepted: {', '.join(OPTIMIZERS)}")
        if self.mode not in MODES:
            raise EstimateError(f"unknown mode {self.mode!r}", hint=f"accepted: {', '.join(MODES)}")
        real_number("epochs", epochs, minimum=0, maximum=MAX_EPOCHS, above_minimum=True, error=EstimateError)
        for name, value in job.items():
            if value is not None:
                real_number(name, value, minimum=0, maximum=MAX_JOB_FIGURE, above_minimum=True, error=EstimateError)

    def validate_quantize_base(self) -> None:
        """Reject a ``quantize_base`` the estimator does not model.

        Raises:
            EstimateError: anything but ``None`` or one of ``QUANTIZE_BASES``.
        """
        if self.quantize_base is not None and self.quantize_base not in QUANTIZE_BASES:
            raise EstimateError(f"unknown quantize_base {self.quantize_base!r}",
                                hint=f"accepted: {', '.join(QUANTIZE_BASES)} (QLoRA)")

    def builder_kwargs(self, *, batch: bool = True) -> dict[str, Any]:
        """Keyword arguments for ``advisor.workload.load_workload``.

        Precision, optimizer and mode always, the batch when ``batch`` (a traced module takes its own from
        ``example_inputs``), the rest when given (``None``, ``False`` and one micro-batch are every builder's defaults).
        """
        kw: dict[str, Any] = {"precision": self.precision, "optimizer": self.optimizer, "mode": self.mode}
        if batch:
            kw["batch_size"] = self.batch_size
        optional = {"seq_len": self.seq_len, "image_size": self.image_size, "lora_rank": self.lora_rank,
                    "quantize_base": self.quantize_base, "gen_len": self.gen_len}
        kw.update({k: v for k, v in optional.items() if v is not None})
        if self.gradient_checkpointing:
            kw["gradient_checkpointing"] = True
        if self.grad_accum != 1:
            kw["grad_accum"] = self.grad_accum
        if self.door != "closed":
            kw["door"] = self.door
        return kw


@dataclass(frozen=True, slots=True)
class TracedMemory:
    """A traced step's memory by category, in bytes, as the fake run saw it (``advisor.workload.trace``)."""

    parameters: float
    gradients: float
    activations: float
    transient: float
    temporaries: float
    weight_copies: float
    peak_without_optimizer: float


@dataclass(frozen=True, slots=True)
class BuiltOptions:
    """What a workload builder built beyond the ``Workload``'s own fields (``Workload.options``).

    ``gradient_checkpointing``, ``grad_accum``, ``lora_rank`` and ``quantize_base`` are ``WorkloadOptions``'
    options, with their defaults and checks; the builders fill the rest where they apply.

    Attributes:
        gradient_checkpointing: activations are recomputed in backward.
        grad_accum: micro-batches per optimizer step.
        frozen: part of the model's weights train no gradient (a frozen base, LoRA).
        lora_rank: the LoRA adapters' rank (``None``: no adapters).
        lora_targets: the linear layers the adapters adapt (``None``: no adapters).
        quantize_base: the frozen base's quantization (``BUILDER_QUANTIZE_BASES``), or ``None``.
        quantized_params: the base's weights held quantized (0: none).
        attention: the attention implementation the closed form prices (``None``: traced, as the module runs).
        decoder_len: an encoder-decoder's decoder tokens per sample (``None``: not an encoder-decoder).
        traced_memory_bytes: a traced step's memory by category (``None``: not traced, or a traced preset).
        allocations: a traced step's allocations and frees, as ``advisor.estimator.allocator.replay`` takes them
            (``None``: none recorded; the closed form's memory formula is used).
        rebuild: the same workload built at another micro-batch (``None``: it cannot be); not data (left out of
            ``to_dict`` and of comparisons).
        timeline: the closed-form step's allocations, written when first asked for
            (``advisor.workload.step_timeline``; ``None``: not written); not data, as ``rebuild``.
    """

    gradient_checkpointing: bool = False
    grad_accum: int = 1
    frozen: bool = False
    lora_rank: int | None = None
    lora_targets: tuple[str, ...] | None = None
    quantize_base: str | None = None
    quantized_params: int = 0
    attention: str | None = None
    decoder_len: int | None = None
    traced_memory_bytes: TracedMemory | None = None
    allocations: Mapping[str, Any] | None = None
    rebuild: Callable[[int], Workload] | None = field(default=None, compare=False, repr=False)
    timeline: Callable[[], Mapping[str, Any] | None] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        """Check the counts and choices, as ``WorkloadOptions`` does its own.

        Raises:
            OptionError: a count outside its ``COUNT_LIMITS`` range, a negative ``quantized_params`` or a
                ``quantize_base`` not in ``BUILDER_QUANTIZE_BASES``.
        """
        _check_counts(self, ("grad_accum",), ("lora_rank", "decoder_len"))
        whole_number("quantized_params", self.quantized_params, minimum=0, maximum=2**62, error=OptionError)
        if self.quantize_base is not None and self.quantize_base not in BUILDER_QUANTIZE_BASES:
            raise OptionError(f"unknown quantize_base {self.quantize_base!r}",
                              hint=f"accepted: {', '.join(BUILDER_QUANTIZE_BASES)}")

    def with_rebuild(self, rebuild: Callable[[int], Workload] | None) -> BuiltOptions:
        """These options with another ``rebuild``."""
        return dataclasses.replace(self, rebuild=rebuild)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form: every field but ``rebuild`` and ``timeline``, in declaration order."""
        return json_fields(self, skip=("rebuild", "timeline"), convert={"traced_memory_bytes": dataclasses.asdict})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BuiltOptions:
        """The options of ``to_dict``'s data (``ValueError`` on an unknown field or a bad value)."""
        if not isinstance(data, Mapping):
            raise ValueError("options: not a mapping")
        kw = dict(data)
        unknown = set(kw) - {f.name for f in dataclasses.fields(cls)} | ({"rebuild", "timeline"} & set(kw))
        if unknown:
            raise ValueError(f"options: unknown field(s) {sorted(unknown)}")
        if kw.get("traced_memory_bytes") is not None:
            kw["traced_memory_bytes"] = TracedMemory(**kw["traced_memory_bytes"])
        if kw.get("lora_targets") is not None:
            kw["lora_targets"] = tuple(str(t) for t in kw["lora_targets"])
        if kw.get("allocations") is not None and not isinstance(kw["allocations"], Mapping):
            raise ValueError("options: allocations not a mapping")
        try:
            return cls(**kw)
        except AdvisorError as e:
            raise ValueError(f"options: {e}") from e
