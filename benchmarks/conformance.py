"""Conformance of the closed-form transformer builder to the real Hugging Face modules it names (issue 25).

For each panel row (a Hugging Face model_type at a small but representative size: two layers, real hidden sizes
and vocabularies) and each case (training at amp-bf16 and fp32, inference as one forward over the sequence), the
real transformers module is built from its config on the meta device and traced with the project's own tracer
(``advisor.workload.trace``: the loss the model computes from ``labels``), and the closed-form workload
(``advisor.workload.from_config``) is built from the same config.  They are compared per class: matmul FLOPs,
fused attention's tile work, bytes moved (all but the optimizer and the embedding lookup's forward: the tracer counts
its whole table as read), host dispatches, bytes autograd saves, and the
memory estimate on an H100 (the traced step's allocator replay against the closed form's sum).
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


def metrics(w: Any) -> dict[str, float]:
    """The compared quantities of one workload (the optimizer left out: both price it the same way), eager."""
    from advisor import estimate

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
            "step_s": float(est.time.step_s)}


def _seq(cfg: Mapping[str, Any]) -> int:
    return SEQ_OF.get(str(cfg["model_type"]), SEQ)


def traced(cfg: Mapping[str, Any], mode: str, precision: str) -> Any:
    """The real transformers module of ``cfg`` (meta device), traced with the loss it computes from labels."""
    import torch

    from advisor.workload.hf import _build, _hf_config, _model_class, _transformers
    from advisor.workload.trace import trace_module

    transformers = _transformers()
    config = _hf_config(transformers, cfg, str(cfg["model_type"]))
    model = _build(_model_class(transformers, cfg, config), config)
    with torch.device("meta"):
        x = torch.empty(BATCH, _seq(cfg), dtype=torch.long)
    kwargs: dict[str, Any] = {}
    if mode == "train":
        kwargs["labels"] = x
    elif getattr(config, "is_encoder_decoder", False):
        kwargs["decoder_input_ids"] = x
    return trace_module(model, (x,), example_kwargs=kwargs, mode=mode, precision=precision,
                        optimizer="adamw" if mode == "train" else None, seq_len=_seq(cfg),
                        step_loss=(lambda out, _inputs: out.loss) if mode == "train" else None)


def closed_form(cfg: Mapping[str, Any], mode: str, precision: str) -> Any | None:
    """The closed-form workload of ``cfg``, or ``None`` where its model_type has none."""
    from advisor.workload.config import MODEL_TYPES, arch_from_config
    from advisor.workload.transformer import build_transformer

    if str(cfg["model_type"]) not in MODEL_TYPES:
        return None
    arch = arch_from_config(dict(cfg), str(cfg["model_type"]))
    extra = {"gen_len": 0} if mode == "infer" and arch.kind == "decoder" else {}
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
        if not self.closed or not self.module:
            return {}
        return {k: (self.closed[k] / self.module[k] - 1.0) if self.module[k] else (0.0 if not self.closed[k] else 1.0)
                for k in (*BOUNDS, "step_s")}

    def outside(self) -> list[str]:
        d = self.diffs()
        return [k for k, bound in BOUNDS.items() if k in d and abs(d[k]) > bound]


def run(models: list[str], cases: list[str]) -> list[Row]:
    rows = []
    for model in models:
        cfg = PANEL[model]
        for case in cases:
            mode, precision = CASES[case]
            try:
                closed = closed_form(cfg, mode, precision)
            except Exception as exc:
                rows.append(Row(model, case, None, None, f"closed form failed: {exc}"))
                continue
            if closed is None:
                rows.append(Row(model, case, None, None, "no closed form for this model_type (priced by the trace)"))
                continue
            try:
                module = traced(cfg, mode, precision)
            except Exception as exc:
                rows.append(Row(model, case, metrics(closed), None, f"trace failed: {type(exc).__name__}: {exc}"))
                continue
            rows.append(Row(model, case, metrics(closed), metrics(module)))
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
        out.append(f"| {r.model} | {r.case} | " + " | ".join(f"{d[k]:+.1%}" for k in keys)
                   + f" | {', '.join(r.outside()) or '-'} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=",".join(PANEL))
    parser.add_argument("--cases", default=",".join(CASES))
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
