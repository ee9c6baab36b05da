"""Hugging Face-style ``config.json`` (a file, a dict, or a hub id) -> ``TransformerArch``.

No torch here. Only the configuration is ever read from the hub, never weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from advisor.errors import WorkloadError
from advisor.files import path_state, read_json_object, shown_path
from advisor.workload.arch import TransformerArch

_CONFIG_HINT = ("pass a Hugging Face config.json: one JSON object with model_type, hidden_size, "
                "num_hidden_layers, ... (the file next to the model's weights)")

# model_type -> our family
MODEL_TYPES = {"gpt2": "gpt2", "gptj": "gptj", "llama": "llama", "mistral": "mistral", "qwen2": "qwen2",
               "gemma": "gemma", "gemma2": "gemma", "mixtral": "mixtral", "bert": "bert", "t5": "t5"}


class UnsupportedModelType(WorkloadError):
    """A config whose ``model_type`` has no analytic model (``from_config`` then builds it with transformers)."""


def _get(cfg: Mapping[str, Any], name: str, key: str, default: Any = ..., *alts: str) -> Any:
    for k in (key, *alts):
        if k in cfg and cfg[k] is not None:
            return cfg[k]
    if default is ...:
        raise WorkloadError(f"config {name!r} is missing required key {key!r}",
                            f"a {cfg.get('model_type')} config.json needs {key!r}")
    return default


def arch_from_config(cfg: Mapping[str, Any], name: str | None = None) -> TransformerArch:
    """Build the exact architecture from an HF config dict.

    Raises:
        WorkloadError: unsupported ``model_type``, or a required key missing (the key is named).
    """
    if not isinstance(cfg, Mapping):
        raise WorkloadError(f"a config must be a dict or a path to config.json, got {type(cfg).__name__}")
    label = name or str(cfg.get("_name_or_path") or cfg.get("model_type") or "config")
    model_type = cfg.get("model_type")
    if model_type is None:
        raise WorkloadError(f"config {label!r} is missing required key 'model_type'",
                            f"accepted model types: {', '.join(sorted(MODEL_TYPES))}")
    family = MODEL_TYPES.get(str(model_type))
    if family is None:
        raise UnsupportedModelType(f"unsupported model_type {model_type!r} in config {label!r}",
                                   f"accepted: {', '.join(sorted(MODEL_TYPES))}; other models: pass the torch "
                                   "module, or install transformers (gpu-advisor[hf]) to build and trace it")
    g = lambda key, default=..., *alts: _get(cfg, label, key, default, *alts)  # noqa: E731
    if family in ("gpt2", "gptj"):
        h = g("n_embd", ..., "hidden_size")
        heads = g("n_head", ..., "num_attention_heads")
        common: dict[str, Any] = dict(
            num_layers=g("n_layer", ..., "num_hidden_layers"), hidden_size=h, num_heads=heads, num_kv_heads=heads,
            head_dim=h // heads, intermediate_size=g("n_inner", 4 * h), vocab_size=g("vocab_size"),
            gated_mlp=False, mlp_bias=True, norm_bias=True, activation=str(g("activation_function", "gelu_new")))
        if family == "gpt2":
            return TransformerArch(family, **common, tie_word_embeddings=g("tie_word_embeddings", True),
                                   qkv_bias=True, out_bias=True, dropout=float(g("resid_pdrop", 0.1)) > 0,
                                   max_position_embeddings=g("n_positions", ..., "max_position_embeddings"),
                                   name=label)
        return TransformerArch(family, **common, tie_word_embeddings=g("tie_word_embeddings", False),
                               lm_head_bias=True, parallel_block=True, dropout=float(g("resid_pdrop", 0.0)) > 0,
                               name=label)
    if family == "bert":
        h, heads = g("hidden_size"), g("num_attention_heads")
        # BertForMaskedLM / BertForPreTraining carry the MLM head (logits over the vocabulary at every
        # position); the masked-LM class has no pooler (add_pooling_layer=False), pre-training keeps it
        archs = [str(a) for a in (cfg.get("architectures") or ())]
        mlm = any(a in ("BertForMaskedLM", "BertForPreTraining") for a in archs)
        pooler = not mlm or "BertForPreTraining" in archs
        return TransformerArch(
            family, num_layers=g("num_hidden_layers"), hidden_size=h, num_heads=heads, num_kv_heads=heads,
            head_dim=h // heads, intermediate_size=g("intermediate_size"), vocab_size=g("vocab_size"),
            tie_word_embeddings=True, gated_mlp=False, qkv_bias=True, out_bias=True, mlp_bias=True, norm_bias=True,
            pooler=pooler, mlm_head=mlm, dropout=float(g("hidden_dropout_prob", 0.1)) > 0,
            max_position_embeddings=g("max_position_embeddings"), type_vocab_size=g("type_vocab_size", 2),
            name=label)
    if family == "t5":
        heads = g("num_heads")
        n_layers = g("num_layers")
        ff = str(g("feed_forward_proj", "relu"))
        return TransformerArch(
            family, num_layers=n_layers, hidden_size=g("d_model"), num_heads=heads, num_kv_heads=heads,
            head_dim=g("d_kv"), intermediate_size=g("d_ff"), vocab_size=g("vocab_size"),
            tie_word_embeddings=g("tie_word_embeddings", True), gated_mlp=ff.startswith("gated"),
            dropout=float(g("dropout_rate", 0.1)) > 0, num_decoder_layers=g("num_decoder_layers", n_layers),
            relative_attention_num_buckets=g("relative_attention_num_buckets", 32), name=label)
    # llama-like decoders
    h, heads = g("hidden_size"), g("num_attention_heads")
    attn_bias = bool(g("attention_bias", False))
    experts = int(g("num_local_experts", 0)) if family == "mixtral" else 0
    return TransformerArch(
        family, num_layers=g("num_hidden_layers"), hidden_size=h, num_heads=heads,
        num_kv_heads=g("num_key_value_heads", heads), head_dim=g("head_dim", h // heads),
        intermediate_size=g("intermediate_size"), vocab_size=g("vocab_size"),
        tie_word_embeddings=g("tie_word_embeddings", family == "gemma"), gated_mlp=True,
        qkv_bias=family == "qwen2" or attn_bias, out_bias=attn_bias, mlp_bias=bool(g("mlp_bias", False)),
        dropout=float(g("attention_dropout", 0.0)) > 0,
        num_experts=experts, experts_per_token=int(g("num_experts_per_tok", 2)) if experts else 0, name=label)


def load_config(source: str | Path | Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """(config dict, label) from a dict, a path to config.json (or its folder), or a hub id.

    Raises:
        WorkloadError: unreadable file, bad JSON, or a hub id that cannot be resolved offline.
    """
    if isinstance(source, Mapping):
        return dict(source), str(source.get("_name_or_path") or source.get("model_type") or "config")
    path = Path(source)
    if path_state(path) == "dir":
        path = path / "config.json"
    if path_state(path) != "missing":  # a file, or a FIFO/device/... that the reader names and refuses
        label = path.parent.name if path.name == "config.json" else path.stem
        data = read_json_object(path, kind="config", what="config", hint=_CONFIG_HINT, error=WorkloadError)
        return data, label
    text = str(source)
    if str(source).endswith(".json"):
        raise WorkloadError(f"config file {shown_path(text)} does not exist",
                            "check the path, or give a preset name (see `specs`/README) or a hub id (owner/name)")
    from advisor.workload.hub import fetch_config, looks_like_hub_id

    if looks_like_hub_id(text):
        return fetch_config(text), text
    raise WorkloadError(f"{shown_path(text)} is neither a preset, a config.json path nor a hub id (owner/name)",
                        "see the presets in the README, pass a config.json path, or a Hugging Face id like "
                        "Qwen/Qwen2-7B")
