"""Which door prices a named Hugging Face model: the closed form (default) or its traced module.

A preset, a config.json or a Hub id whose ``model_type`` has a closed form (``config.MODEL_TYPES``) is priced by the
closed-form builder unless ``door="trace"`` is asked for; then the transformers module the config names is built on
the meta device and one step of it is traced with the project's own tracer, exactly as ``benchmarks/conformance.py``
traces it (the loss the model computes from ``labels``, transformers' own gradient checkpointing), and kept in the
trace cache. The decision and its measurements: docs/doors.md. A model_type with no closed form is always traced
(``advisor.workload.hf``).

No torch or transformers import here: the trace door imports them only when it runs (and not on a cache hit).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from advisor.errors import WorkloadError
from advisor.workload.base import Workload
from advisor.workload.options import DOORS, check_door

__all__ = ["DOORS", "check_door", "door_of", "traced_named"]

#: Options only the closed form models; the trace door refuses them (what the traced module would need: PEFT,
#: bitsandbytes, a generation loop, another attention implementation) rather than price something else.
_CLOSED_ONLY = ("lora_rank", "lora_targets", "quantize_base")
#: Keywords the closed form takes whose default value the trace door runs as well.
_CLOSED_DEFAULTS = {"attention": "sdpa", "prefill_logits": "last", "repeat_kv": None}


def door_of(w: Workload) -> str:
    """Which door priced ``w``: ``closed`` (a closed-form builder: it names the attention it prices) or ``trace``."""
    return "closed" if w.options.attention is not None else "trace"


def traced_named(cfg: Mapping[str, Any], name: str, kind: str, *, source: str, default_seq_len: int,
                 batch_size: int = 1, seq_len: int | None = None, mode: str = "train", precision: str = "amp-bf16",
                 optimizer: str | None = "adamw", gradient_checkpointing: bool = False, grad_accum: int = 1,
                 gen_len: int | None = None, **closed_only: Any) -> Workload:
    """One step of the transformers module ``cfg`` names, traced (the trace door), from the trace cache when seen.

    ``kind``: the closed form's ``TransformerArch.kind`` of ``cfg`` (decoder, encoder, encoder-decoder), which picks
    the model class when the config has no ``architectures``.

    Raises:
        WorkloadError: an option only the closed form models (LoRA, a quantized base, another attention, generation:
            an inference of a decoder needs ``gen_len=0``), transformers missing, or the module failing to trace.
    """
    bad = [k for k, v in closed_only.items() if k in _CLOSED_ONLY and v is not None]
    bad += [k for k, v in closed_only.items() if k in _CLOSED_DEFAULTS and v != _CLOSED_DEFAULTS[k]]
    unknown = set(closed_only) - set(_CLOSED_ONLY) - set(_CLOSED_DEFAULTS)
    if unknown:
        raise TypeError(f"unexpected option(s) {', '.join(sorted(unknown))}")
    if mode != "train" and kind == "decoder" and gen_len != 0:
        bad.append("gen_len (generation: give gen_len=0 for one forward over the sequence)")
    if bad:
        raise WorkloadError(f"the trace door cannot price {', '.join(bad)} for {name!r}",
                            "use door='closed' (--door closed), which models them")
    from advisor.workload.tracecache import cached_build

    seq = seq_len or default_seq_len
    key = {"config": dict(cfg), "name": name, "kind": kind, "seq_len": seq, "mode": mode, "precision": precision,
           "optimizer": optimizer if mode == "train" else None, "gradient_checkpointing": gradient_checkpointing,
           "grad_accum": grad_accum}

    def build(b: int) -> Workload:
        from advisor.workload.hf import trace_named_module

        w = trace_named_module(cfg, name, kind, batch=b, seq=seq, mode=mode, precision=precision, optimizer=optimizer,
                   gradient_checkpointing=gradient_checkpointing, grad_accum=grad_accum)
        return dataclasses.replace(w, source=source)  # type: ignore[arg-type]

    return cached_build("hf-door", key, batch_size, build,
                        f"building {name} with transformers and tracing one step (door=trace; once, cached)")
