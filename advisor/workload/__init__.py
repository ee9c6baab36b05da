"""Workloads: what one step of a model asks of the hardware.

Three ways in, all returning ``advisor.workload.base.Workload``:

- ``from_preset(name, ...)``: a named model ("llama-3-8b", "ResNet-50", "meta-llama/Llama-3.1-8B").
  Transformer presets use the analytic path (no torch import); CNN/vision/RNN presets are torch
  definitions traced once per shape on fake tensors.
- ``from_config(path_or_dict, ...)``: a Hugging Face-style config.json (analytic path).
- ``from_module(module, example_inputs, ...)``: any ``torch.nn.Module`` traced under FakeTensorMode.

``load_workload(model, ...)`` dispatches on the kind of ``model``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from advisor.errors import UnknownModelError, WorkloadError
from advisor.files import path_state
from advisor.workload.base import OpCost, Workload
from advisor.workload.presets import (
    PRESETS,
    context_limit,
    context_warning,
    get_preset,
    list_presets,
    resolve_preset,
)

__all__ = ["OpCost", "Workload", "from_config", "from_module", "from_preset", "list_presets", "load_workload",
           "resolve_preset"]

_TRANSFORMER_ONLY = ("seq_len", "gen_len", "attention", "lora_rank", "lora_targets", "quantize_base")


def from_preset(
    name: str,
    *,
    batch_size: int = 1,
    seq_len: int | None = None,
    image_size: int | None = None,
    mode: str = "train",
    precision: str = "amp-bf16",
    optimizer: str | None = "adamw",
    gradient_checkpointing: bool = False,
    lora_rank: int | None = None,
    lora_targets: tuple[str, ...] | list[str] | str | None = None,
    quantize_base: str | None = None,
    grad_accum: int = 1,
    gen_len: int | None = None,
    attention: str = "sdpa",
    prefill_logits: str = "last",
    repeat_kv: bool | None = None,
    door: str = "closed",
) -> Workload:
    """One step of a preset model.

    Args:
        name: preset id or alias (see ``list_presets()``).
        batch_size: micro-batch (samples).
        seq_len: tokens per sample (transformers; default 2048, capped by a learned position table).
        image_size: input side in pixels (vision presets; default the preset's own).
        mode: ``train`` or ``infer``.
        precision, optimizer: see ``advisor.workload.options.PRECISIONS`` / ``OPTIMIZERS``.
        gradient_checkpointing, lora_rank, lora_targets, quantize_base, grad_accum, gen_len, attention,
            prefill_logits, repeat_kv: build options (LoRA/QLoRA/attention/generation's apply to transformers only;
            ``advisor.workload.transformer.build_transformer``).
        door: ``closed`` (the closed-form builder) or ``trace`` (the transformers module built from the preset's
            config and traced: ``advisor.workload.door``); transformer presets only.

    Raises:
        UnknownModelError: no preset of that name (closest names listed).
        WorkloadError: bad sizes or options.
    """
    from advisor.workload.door import check_door

    preset = get_preset(name)
    check_door(door)
    if preset.kind == "transformer":
        if image_size is not None:
            raise WorkloadError(f"image_size does not apply to {preset.name} (a transformer)", "use seq_len")
        return _transformer_preset(
            preset, door, batch_size=batch_size, seq_len=seq_len, mode=mode, precision=precision, optimizer=optimizer,
            gradient_checkpointing=gradient_checkpointing, lora_rank=lora_rank, lora_targets=lora_targets,
            quantize_base=quantize_base, grad_accum=grad_accum, gen_len=gen_len, attention=attention,
            prefill_logits=prefill_logits, repeat_kv=repeat_kv)
    given = {"gen_len": gen_len, "lora_rank": lora_rank, "lora_targets": lora_targets, "quantize_base": quantize_base}
    bad = [k for k, v in given.items() if v is not None]
    if bad:
        raise WorkloadError(f"option(s) {', '.join(bad)} apply to transformer models, not {preset.name}")
    if door != "closed":
        raise WorkloadError(f"door {door!r} applies to transformer presets; {preset.name} is a traced module "
                            "already", "leave door out")
    if preset.family == "rnn":
        if image_size is not None:
            raise WorkloadError(f"image_size does not apply to {preset.name} (a sequence model)", "use seq_len")
    elif seq_len is not None:
        raise WorkloadError(f"seq_len does not apply to {preset.name} (a vision model)", "use image_size")
    from advisor.workload.tracecache import cached_build

    def build(b: int) -> Workload:
        from advisor.workload.trace_presets import preset_workload

        return preset_workload(preset, batch_size=b, seq_len=seq_len, image_size=image_size, mode=mode,
                               precision=precision, optimizer=optimizer,
                               gradient_checkpointing=gradient_checkpointing, grad_accum=grad_accum)

    # Traced once per shape, then kept on disk (advisor.workload.tracecache): a repeated run skips torch.
    key = {"preset": preset.name, "definition": preset.config, "seq_len": seq_len, "image_size": image_size,
           "mode": mode, "precision": precision, "optimizer": optimizer,
           "gradient_checkpointing": gradient_checkpointing, "grad_accum": grad_accum}
    return cached_build("preset", key, batch_size, build,
                        f"tracing {preset.name} on fake tensors (once; cached for later runs)")


def _transformer_preset(preset: Any, door: str, **options: Any) -> Workload:
    """A transformer preset through ``door`` (``_named_transformer``)."""
    from advisor.workload.config import arch_from_config

    arch = arch_from_config(preset.config, preset.name)
    return _named_transformer(preset.config, arch, preset.name, "preset", door, 2048, **options)


def _named_transformer(cfg: dict[str, Any], arch: Any, label: str, source: Literal["preset", "config"], door: str,
                       default_seq: int, **options: Any) -> Workload:
    """A named transformer through ``door``: the closed form, or its transformers module traced (docs/doors.md)."""
    if door == "trace":
        from advisor.workload.door import traced_named

        wl = traced_named(cfg, label, arch.kind, source=source, default_seq_len=_default_seq(arch, default_seq),
                          **options)
    else:
        from advisor.workload.transformer import build_transformer

        wl = build_transformer(arch, name=label, source=source, default_seq_len=default_seq, **options)
    return _with_context_warning(wl, label, context_limit(cfg))


def from_config(config: str | Path | Mapping[str, Any], *, name: str | None = None, **options: Any) -> Workload:
    """One step of the transformer a HF-style config describes (a dict, a config.json path, or a hub id).

    Takes the same keyword options as ``from_preset``.

    Raises:
        WorkloadError: unreadable config, missing key (named), unsupported model_type, bad options.
    """
    from advisor.workload.config import UnsupportedModelType, arch_from_config, load_config
    from advisor.workload.door import check_door

    door = check_door(options.pop("door", "closed"))
    cfg, label = load_config(config)
    label = name or label
    try:
        arch = arch_from_config(cfg, label)
    except UnsupportedModelType:
        # No analytic model: build it from the config with transformers (meta device) and trace it -- unless the
        # config gives no sizes at all, when transformers would silently fill in a default model.
        from advisor.workload.hf import from_hf_config, has_sizes

        if not has_sizes(cfg):
            raise

        wl = from_hf_config(cfg, label, **options)
        return _with_context_warning(wl, label, context_limit(cfg))
    if options.pop("image_size", None) is not None:
        raise WorkloadError(f"image_size does not apply to config {label!r} (a transformer)", "use seq_len")
    default_seq = min(int(cfg.get("max_position_embeddings") or cfg.get("n_positions") or 2048), 2048)
    return _named_transformer(cfg, arch, label, "config", door, default_seq, **options)


def _default_seq(arch: Any, default: int) -> int:
    """The sequence the closed form takes when none is given: ``default``, capped by a learned position table."""
    return min(default, arch.max_position_embeddings or default)


def _with_context_warning(w: Workload, name: str, limit: int | None) -> Workload:
    """``w`` with a warning in its assumptions when its context runs past ``limit`` (rebuilds keep it)."""
    import dataclasses

    note = context_warning(name, w.seq_len, w.gen_len, limit)
    if note is None:
        return w
    rebuild = w.options.rebuild
    options = w.options
    if rebuild is not None:
        options = options.with_rebuild(lambda b: _with_context_warning(rebuild(b), name, limit))
    return dataclasses.replace(w, assumptions=(note, *w.assumptions), options=options)


def from_module(module: Any, example_inputs: Any, **options: Any) -> Workload:
    """One step of any ``torch.nn.Module``, traced on fake tensors (see ``advisor.workload.trace``)."""
    from advisor.workload.trace import trace_module

    return trace_module(module, example_inputs, **options)


def load_workload(model: Any, *, example_inputs: Any = None, **options: Any) -> Workload:
    """Dispatch: a preset name, a config path / hub id, a config dict, or an nn.Module (with example_inputs).

    Raises:
        UnknownModelError: a name that is neither a preset nor a config path / hub id.
        WorkloadError: a module without example_inputs, or bad options.
    """
    if isinstance(model, Workload):
        return model
    if isinstance(model, Mapping):
        return from_config(model, **options)
    if isinstance(model, (str, Path)):
        text = str(model)
        try:
            resolve_preset(text)
        except UnknownModelError:
            path = Path(text)
            exists = path_state(path) != "missing"  # a 5,000-character name is no path, not an OSError
            if exists or text.endswith(".json") or (text.count("/") == 1 and not text.startswith(".")):
                return from_config(path if exists else text, **options)
            raise
        return from_preset(text, **options)
    if type(model).__module__.startswith("torch") or hasattr(model, "named_parameters"):
        if example_inputs is None:
            raise WorkloadError(f"a torch module ({type(model).__name__}) needs example_inputs",
                                "pass example_inputs=(tensor, ...) with the batch dimension first")
        return from_module(model, example_inputs, **options)
    raise WorkloadError(f"cannot build a workload from {type(model).__name__}",
                        "pass a preset name, a config.json path or dict, or a torch.nn.Module")


def preset_table() -> list[dict[str, Any]]:
    """Presets as rows (name, kind, family, published params, source) for listings."""
    return [{"name": p.name, "kind": p.kind, "published_params": p.published_params, "source": p.source,
             "aliases": list(p.aliases)} for p in PRESETS.values()]
