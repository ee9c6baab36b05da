"""Conformance of the closed-form transformer builder to the real Hugging Face modules it names (issue 25).

For each panel row (a Hugging Face model_type at a small but representative size: four layers, real hidden sizes
and vocabularies) and each case (training at amp-bf16 and fp32, inference as one forward over the sequence; and,
``STEP_CASES``, generation's prefill and one decode step over a filled ``DynamicCache``, training with transformers'
own gradient checkpointing, and LoRA on a frozen base), the real transformers module is built from its config on the
meta device and traced with the project's own tracer (``advisor.workload.trace``: the loss the model computes from
``labels``), and the closed-form workload (``advisor.workload.from_config``) is built from the same config.  They are
compared per class: matmul FLOPs, fused attention's tile work, bytes moved (all but the optimizer and the embedding
lookup's forward: the tracer counts its whole table as read), host dispatches, bytes autograd saves, and the memory
estimate on an H100 (the traced step's allocator replay against the closed form's sum).
The builder follows the module, never the other way (``docs/conformance.md``).

    PYTHONPATH=. .venv/bin/python benchmarks/conformance.py [--rows gpt2,llama] [--write docs/conformance.md]

Needs torch and transformers (the ``dev`` extra).  A row whose model_type has no closed form is listed as such.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: Bounds of issue 25: relative difference closed form vs traced module.
BOUNDS = {"gemm_flops": 0.03, "attention_work": 0.03, "bytes": 0.03, "dispatched": 0.10, "saved": 0.05,
          "peak": 0.05}
GPU = "h100-sxm5-80gb"
#: Four layers at real widths, a real batch and sequence: a fake-tensor trace costs the same at any size, and the
#: head (logits, loss) weighs on four layers about as much as on a real model's last few
BATCH, SEQ = 4, 1024
#: rows whose learned position table is shorter
SEQ_OF = {"bert": 512, "roberta": 512}

_LLAMA = {"hidden_size": 1024, "num_hidden_layers": 4, "num_attention_heads": 16, "num_key_value_heads": 4,
          "intermediate_size": 2816, "vocab_size": 32000, "max_position_embeddings": 4096}
#: label -> HF config (the architectures entry names the class with its head).
PANEL: dict[str, dict[str, Any]] = {
    "gpt2": {"model_type": "gpt2", "n_embd": 768, "n_layer": 4, "n_head": 12, "vocab_size": 50257,
             "n_positions": 1024, "architectures": ["GPT2LMHeadModel"]},
    "bert": {"model_type": "bert", "hidden_size": 768, "num_hidden_layers": 4, "num_attention_heads": 12,
             "intermediate_size": 3072, "vocab_size": 30522, "max_position_embeddings": 512,
             "architectures": ["BertForMaskedLM"]},
    "roberta": {"model_type": "roberta", "hidden_size": 768, "num_hidden_layers": 4, "num_attention_heads": 12,
                "intermediate_size": 3072, "vocab_size": 50265, "max_position_embeddings": 514,
                "type_vocab_size": 1, "architectures": ["RobertaForMaskedLM"]},
    "llama": {"model_type": "llama", **_LLAMA, "architectures": ["LlamaForCausalLM"]},
    "mistral": {"model_type": "mistral", **_LLAMA, "sliding_window": None, "architectures": ["MistralForCausalLM"]},
    "qwen2": {"model_type": "qwen2", **_LLAMA, "architectures": ["Qwen2ForCausalLM"]},
    "gemma": {"model_type": "gemma", "hidden_size": 1024, "num_hidden_layers": 4, "num_attention_heads": 8,
              "num_key_value_heads": 1, "head_dim": 256, "intermediate_size": 4096, "vocab_size": 256000,
              "max_position_embeddings": 8192, "architectures": ["GemmaForCausalLM"]},
    "phi": {"model_type": "phi", "hidden_size": 1024, "num_hidden_layers": 4, "num_attention_heads": 16,
            "intermediate_size": 4096, "vocab_size": 51200, "max_position_embeddings": 2048,
            "architectures": ["PhiForCausalLM"]},
    "t5": {"model_type": "t5", "d_model": 512, "d_kv": 64, "d_ff": 2048, "num_layers": 4, "num_heads": 8,
           "vocab_size": 32128, "decoder_start_token_id": 0, "pad_token_id": 0, "eos_token_id": 1,
           "architectures": ["T5ForConditionalGeneration"]},
    "opt": {"model_type": "opt", "hidden_size": 768, "num_hidden_layers": 4, "num_attention_heads": 12,
            "ffn_dim": 3072, "vocab_size": 50272, "max_position_embeddings": 2048, "word_embed_proj_dim": 768,
            "architectures": ["OPTForCausalLM"]},
    "mixtral": {"model_type": "mixtral", **_LLAMA, "num_local_experts": 4, "num_experts_per_tok": 2,
                "architectures": ["MixtralForCausalLM"]},
}
#: case label -> (mode, precision)
CASES: dict[str, tuple[str, str]] = {"train amp-bf16": ("train", "amp-bf16"), "train fp32": ("train", "fp32"),
                                     "forward bf16": ("infer", "bf16")}
#: case label -> (mode, precision, step) for the steps beyond one plain forward / training step:
#: ``prefill``: generation's forward over the prompt as ``generate()`` runs it (``logits_to_keep=1``, the cache
#: filled); ``decode``: one generated token after a prefill of the row's sequence (a ``DynamicCache`` of that many
#: positions per layer; the closed form's decode step at the mean context ``seq_len + gen_len / 2`` with
#: ``gen_len=2``, the same context); ``checkpointing``: transformers' own ``gradient_checkpointing_enable()``
#: against the builder's; ``lora``: rank ``LORA_RANK`` adapters on PEFT's default targets, the base frozen.
STEP_CASES: dict[str, tuple[str, str, str]] = {
    "prefill bf16": ("infer", "bf16", "prefill"), "decode bf16": ("infer", "bf16", "decode"),
    "train amp-bf16 checkpointing": ("train", "amp-bf16", "checkpointing"),
    "train amp-bf16 lora": ("train", "amp-bf16", "lora")}
#: Every case: label -> (mode, precision, step)
ALL_CASES: dict[str, tuple[str, str, str]] = {**{k: (*v, "full") for k, v in CASES.items()}, **STEP_CASES}
#: Classes a decode step is compared on: it saves nothing, and its memory is the cache the prefill left
DECODE_CLASSES = ("gemm_flops", "attention_work", "bytes", "dispatched")
LORA_RANK = 16
#: PEFT's default LoRA targets per model_type (peft.utils.constants.TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING:
#: llama, mistral, qwen2, gemma: q_proj and v_proj) and their module names
LORA_TARGETS = {"q": "q_proj", "v": "v_proj"}
LORA_MODEL_TYPES = ("llama", "mistral", "qwen2", "gemma")


def applies(cfg: Mapping[str, Any], step: str) -> bool:
    """Whether a ``STEP_CASES`` step is a case of ``cfg``.

    Generation for causal LMs, LoRA where PEFT's targets are named q_proj / v_proj.
    """
    model_type = str(cfg["model_type"])
    if step in ("prefill", "decode"):
        return model_type not in ("bert", "roberta", "t5")
    return step != "lora" or model_type in LORA_MODEL_TYPES


def metrics(w: Any, step: str = "full") -> dict[str, float]:
    """The compared quantities of one workload (the optimizer left out: both price it the same way), eager.

    ``step="decode"``: the closed form's decode step (its ``decode_ops`` and decode dispatches), or a traced one-token
    forward, on ``DECODE_CLASSES`` only.
    """
    from advisor import estimate

    if step == "decode":
        return _decode_metrics(w)
    # the eager step's ops (the trace's are eager): a graph runtime's fused stand-ins left out
    ops = [op for op in w.ops if op.phase != "optimizer" and op.runtime in (None, "eager")]
    est = estimate(w, gpu=GPU, calibration="none")
    return {"gemm_flops": sum(op.flops for op in ops if op.kind == "matmul"),
            "attention_work": sum(op.tile_flops or op.flops for op in ops if op.kind == "attention"),
            # the lookup's forward left out on both sides: the tracer counts an embedding's whole table as read (its
            # convention for every tensor input), where the gather reads the rows it returns
            "bytes": sum(op.bytes for op in ops if not (op.kind == "embedding" and op.phase == "forward")),
            # host dispatches: the closed form's eager counts, the trace's every dispatched op (views included)
            "dispatched": float(sum(n for p, n in w.eager_ops.items() if p not in ("optimizer", "decode"))
                                if any(p != "optimizer" for p in w.eager_ops) else sum(op.count for op in ops)),
            "saved": float(w.activation_bytes), "peak": float(est.memory.total_bytes),
            # generation's prefill alone (the case traces it alone); else the step
            "step_s": float(est.time.prefill_s if w.decode_ops else est.time.step_s)}


def _decode_metrics(w: Any) -> dict[str, float]:
    """``DECODE_CLASSES`` of one decode step: the closed form's ``decode_ops``, or a traced one-token forward's ops."""
    ops = [op for op in (w.decode_ops or w.ops) if op.runtime in (None, "eager")]
    dispatched = w.eager_ops.get("decode") if w.decode_ops else None
    return {"gemm_flops": sum(op.flops for op in ops if op.kind == "matmul"),
            "attention_work": sum(op.tile_flops or op.flops for op in ops if op.kind == "attention"),
            "bytes": sum(op.bytes for op in ops if op.kind != "embedding"),
            "dispatched": float(dispatched if dispatched is not None else sum(op.count for op in ops))}


def _seq(cfg: Mapping[str, Any]) -> int:
    return SEQ_OF.get(str(cfg["model_type"]), SEQ)


def traced(cfg: Mapping[str, Any], mode: str, precision: str, step: str = "full") -> Any:
    """The real transformers module of ``cfg`` (meta device), traced with the loss it computes from labels.

    ``step`` (``STEP_CASES``): ``prefill`` passes ``logits_to_keep=1`` as ``generate()`` does; ``decode`` traces one
    token over a ``DynamicCache`` holding ``_seq(cfg)`` positions per layer; ``checkpointing`` turns on the module's
    own ``gradient_checkpointing_enable()``; ``lora`` freezes the base and adds ``_Lora`` adapters.
    """
    import torch

    from advisor.workload.hf import _build, _hf_config, _model_class, _transformers
    from advisor.workload.trace import trace_module

    transformers = _transformers()
    config = _hf_config(transformers, cfg, str(cfg["model_type"]))
    model = _build(_model_class(transformers, cfg, config), config)
    seq = _seq(cfg)
    kwargs: dict[str, Any] = {}
    if step == "checkpointing":
        # transformers 5 renamed it activation_checkpointing_enable (the old name warns)
        (getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable)()
    elif step == "lora":
        _add_lora(model)
    with torch.device("meta"):
        x = torch.empty(BATCH, 1 if step == "decode" else seq, dtype=torch.long)
        if step == "decode":
            kwargs["past_key_values"] = _filled_cache(transformers, config, seq, precision)
    if mode == "train":
        kwargs["labels"] = x
    elif getattr(config, "is_encoder_decoder", False):
        kwargs["decoder_input_ids"] = x
    if step in ("prefill", "decode"):
        kwargs.update(use_cache=True, logits_to_keep=1)
    w = trace_module(model, (x,), example_kwargs=kwargs, mode=mode, precision=precision,
                     optimizer="adamw" if mode == "train" else None, seq_len=x.shape[1],
                     step_loss=(lambda out, _inputs: out.loss) if mode == "train" else None)
    if step in ("prefill", "decode") and w.options.allocations:
        # generate() runs a model from_pretrained loads in its own dtype (advisor.workload.step_generate): no fp32
        # build and cast before the step, on either side
        w = dataclasses.replace(w, options=dataclasses.replace(
            w.options, allocations={**w.options.allocations, "loaded_in_dtype": True}))
    return w


def _filled_cache(transformers: Any, config: Any, positions: int, precision: str) -> Any:
    """A ``DynamicCache`` after a prefill of ``positions`` tokens: meta keys and values for every layer."""
    import torch

    heads = int(config.num_attention_heads)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
    dtype = torch.float32 if precision == "fp32" else torch.bfloat16
    cache = transformers.DynamicCache(config=config)
    for layer in range(int(config.num_hidden_layers)):
        k, v = (torch.empty(BATCH, kv_heads, positions, head_dim, dtype=dtype, device="meta") for _ in range(2))
        cache.update(k, v, layer)
    return cache


def _add_lora(model: Any) -> None:
    """Freeze ``model`` and wrap each ``LORA_TARGETS`` linear in ``_Lora`` (PEFT's LoRA layer, written out)."""
    import torch

    for p in model.parameters():
        p.requires_grad_(False)
    names = set(LORA_TARGETS.values())
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if child_name in names and isinstance(child, torch.nn.Linear):
                setattr(parent, child_name, _lora_cls()(child, LORA_RANK))


def _lora_cls() -> Any:
    """PEFT's ``lora.Linear`` forward, written out (peft/tuners/lora/layer.py; PEFT is not a dependency).

    The frozen base's output plus ``lora_B(lora_A(dropout(x))) * scaling`` (dropout 0: PEFT's ``nn.Identity``), the
    input cast to the adapters' dtype, the result cast back to the base output's dtype.
    """
    import torch

    class _Lora(torch.nn.Module):
        def __init__(self, base: torch.nn.Linear, rank: int) -> None:
            super().__init__()
            self.base_layer, self.scaling = base, 2.0  # lora_alpha 32 / r 16
            dev, dt = base.weight.device, base.weight.dtype
            self.lora_A = torch.nn.Linear(base.in_features, rank, bias=False, device=dev, dtype=dt)
            self.lora_B = torch.nn.Linear(rank, base.out_features, bias=False, device=dev, dtype=dt)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            result = self.base_layer(x)
            out_dtype = result.dtype
            result = result + self.lora_B(self.lora_A(x.to(self.lora_A.weight.dtype))) * self.scaling
            return result.to(out_dtype)

    return _Lora


def closed_form(cfg: Mapping[str, Any], mode: str, precision: str, step: str = "full") -> Any | None:
    """The closed-form workload of ``cfg`` (``step`` as in ``traced``), or ``None`` where its model_type has none."""
    from advisor.workload.config import MODEL_TYPES, arch_from_config
    from advisor.workload.transformer import build_transformer

    if str(cfg["model_type"]) not in MODEL_TYPES:
        return None
    arch = arch_from_config(dict(cfg), str(cfg["model_type"]))
    extra: dict[str, Any] = {}
    if mode == "infer" and arch.kind == "decoder":
        extra["gen_len"] = 2 if step in ("prefill", "decode") else 0
    if step == "checkpointing":
        extra["gradient_checkpointing"] = True
    elif step == "lora":
        extra.update(lora_rank=LORA_RANK, lora_targets=tuple(LORA_TARGETS))
    return build_transformer(arch, name=str(cfg["model_type"]), source="config", batch_size=BATCH, seq_len=_seq(cfg),
                             mode=mode, precision=precision, optimizer="adamw" if mode == "train" else None, **extra)


@dataclasses.dataclass(frozen=True)
class Row:
    """One panel row and case: the closed form's and the module's metrics, or why there is no comparison."""

    model: str
    case: str
    closed: dict[str, float] | None
    module: dict[str, float] | None
    note: str = ""

    def diffs(self) -> dict[str, float]:
        """Closed form / module - 1 for every class both sides have."""
        if not self.closed or not self.module:
            return {}
        return {k: (self.closed[k] / self.module[k] - 1.0) if self.module[k] else (0.0 if not self.closed[k] else 1.0)
                for k in (*BOUNDS, "step_s") if k in self.closed and k in self.module}

    def outside(self) -> list[str]:
        d = self.diffs()
        return [k for k, bound in BOUNDS.items() if k in d and abs(d[k]) > bound]


def run(models: list[str], cases: list[str]) -> list[Row]:
    rows = []
    for model in models:
        cfg = PANEL[model]
        for case in cases:
            mode, precision, step = ALL_CASES[case]
            if not applies(cfg, step):
                continue
            try:
                closed = closed_form(cfg, mode, precision, step)
            except Exception as exc:
                rows.append(Row(model, case, None, None, f"closed form failed: {exc}"))
                continue
            if closed is None:
                rows.append(Row(model, case, None, None, "no closed form for this model_type (priced by the trace)"))
                continue
            try:
                module = traced(cfg, mode, precision, step)
            except Exception as exc:
                rows.append(Row(model, case, metrics(closed, step), None,
                                f"trace failed: {type(exc).__name__}: {exc}"))
                continue
            rows.append(Row(model, case, metrics(closed, step), metrics(module, step)))
    return rows


def table(rows: list[Row]) -> str:
    keys = (*BOUNDS, "step_s")
    out = ["| model | case | " + " | ".join(keys) + " | outside bounds |",
           "|---|---|" + "---:|" * len(keys) + "---|"]
    for r in rows:
        d = r.diffs()
        if not d:
            out.append(f"| {r.model} | {r.case} | " + " | ".join("" for _ in keys) + f" | {r.note} |")
            continue
        out.append(f"| {r.model} | {r.case} | " + " | ".join(f"{d[k]:+.1%}" if k in d else "" for k in keys)
                   + f" | {', '.join(r.outside()) or '-'} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=",".join(PANEL))
    parser.add_argument("--cases", default=",".join(ALL_CASES))
    parser.add_argument("--write", type=Path, help="write the table between the markers of this markdown file")
    args = parser.parse_args(argv)
    rows = run(args.rows.split(","), args.cases.split(","))
    text = table(rows)
    print(text)
    if args.write:
        doc = args.write.read_text()
        start, end = "<!-- conformance table -->", "<!-- end conformance table -->"
        head, _, rest = doc.partition(start)
        _, _, tail = rest.partition(end)
        args.write.write_text(f"{head}{start}\n{text}\n{end}{tail}")
        print(f"wrote {args.write}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
