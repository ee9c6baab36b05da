"""Hugging Face-style ``config.json`` (a file, a dict, or a hub id) -> ``TransformerArch``.

No torch here. Only the configuration is ever read from the hub, never weights.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from advisor.errors import WorkloadError
from advisor.files import path_state, read_json_object, shown_path
from advisor.numbers import real_number, show
from advisor.workload.arch import TransformerArch, check_arch_field

_CONFIG_HINT = ("pass a Hugging Face config.json: one JSON object with model_type, hidden_size, "
                "num_hidden_layers, ... (the file next to the model's weights)")

# model_type -> our family
MODEL_TYPES = {"gpt2": "gpt2", "gptj": "gptj", "llama": "llama", "mistral": "mistral", "qwen2": "qwen2",
               "gemma": "gemma", "gemma2": "gemma", "mixtral": "mixtral", "bert": "bert", "t5": "t5",
               "mt5": "t5"}  # mT5: T5 v1.1's blocks (gated-gelu), its own class in transformers


class UnsupportedModelType(WorkloadError):
    """A config whose ``model_type`` has no analytic model (``from_config`` then builds it with transformers)."""


def config_label(cfg: Mapping[str, Any]) -> str:
    """The name a config goes by in messages: its ``_name_or_path``, else its ``model_type``, else "config"."""
    for key in ("_name_or_path", "model_type"):
        value = cfg.get(key)
        if isinstance(value, str) and value:
            return value[:200]
    return "config"


def _get(cfg: Mapping[str, Any], name: str, key: str, default: Any = ..., *alts: str) -> tuple[str, Any]:
    """(the key found, its value): the first of ``key``, ``alts`` present and not null, else ``default``."""
    for k in (key, *alts):
        if k in cfg and cfg[k] is not None:
            return k, cfg[k]
    if default is ...:
        raise WorkloadError(f"config {name!r} is missing required key {key!r}",
                            f"a {cfg.get('model_type')} config.json needs {key!r}")
    return key, default


#: Keys some builders read for the context (``from_config``'s default sequence, the context warning) whatever the
#: family: checked whenever present.
_CONTEXT_KEYS = ("max_position_embeddings", "n_positions")


class _Reader:
    """Reads one config's fields, each checked as it is read.

    Counts against ``ARCH_LIMITS``, flags as booleans, probabilities in [0, 1]; the message names the config's own
    key, its value and what is accepted.
    """

    def __init__(self, cfg: Mapping[str, Any], label: str) -> None:
        self.cfg, self.label, self.where = cfg, label, f"config {label!r}"

    def count(self, field: str, key: str, default: Any = ..., *alts: str) -> int:
        """A count for ``TransformerArch.field`` from ``key`` (or ``alts``); ``default`` when absent."""
        k, value = _get(self.cfg, self.label, key, default, *alts)
        return check_arch_field(field, value, key=k, where=self.where)

    def flag(self, key: str, default: bool) -> bool:
        _, value = _get(self.cfg, self.label, key, default)
        if not isinstance(value, bool):
            raise WorkloadError(f"{self.where}: {key} must be true or false, got {show(value)}",
                                "a JSON boolean (true/false), not a string or a number")
        return value

    def probability(self, key: str, default: float) -> float:
        _, value = _get(self.cfg, self.label, key, default)
        return real_number(key, value, minimum=0.0, maximum=1.0, error=WorkloadError, where=self.where,
                           hint="a dropout probability")

    def text(self, key: str, default: str) -> str:
        _, value = _get(self.cfg, self.label, key, default)
        if not isinstance(value, str):
            raise WorkloadError(f"{self.where}: {key} must be a string, got {show(value)}")
        return value

    def head_dim(self, hidden: int, heads: int, hidden_key: str, heads_key: str) -> int:
        """``hidden / heads``, refused unless whole (the attention splits the hidden size among the heads)."""
        if hidden % heads:
            raise WorkloadError(f"{self.where}: {hidden_key} {hidden:,} is not a multiple of {heads_key} {heads:,}",
                                f"each head gets {hidden_key} / {heads_key} dimensions: pick a {heads_key} that "
                                f"divides {hidden_key}")
        return hidden // heads


#: No number in a config is this large (the analytic builder's own keys have far smaller bounds, ``ARCH_LIMITS``).
_MAX_CONFIG_INT = 2**64


def _check_numbers(value: Any, where: str, key: str = "", depth: int = 0) -> None:
    """Refuse, anywhere in a config, a number no model has: NaN, infinity or an integer of 2**64 or more.

    The transformers path (a model type with no analytic builder) hashes and serializes the whole config: such a
    value is a corrupt or hand-edited file, never a model.
    """
    if isinstance(value, Mapping) and depth < 8:
        for k, item in value.items():
            _check_numbers(item, where, f"{key}.{k}" if key else str(k), depth + 1)
    elif isinstance(value, list) and depth < 8:
        for i, item in enumerate(value[:1000]):
            _check_numbers(item, where, f"{key}[{i}]", depth + 1)
    elif isinstance(value, bool):
        return
    elif (isinstance(value, int) and abs(value) >= _MAX_CONFIG_INT) or (
            isinstance(value, float) and not math.isfinite(value)):
        raise WorkloadError(f"{where}: {key} = {show(value)} is not a number any model has",
                            f"config numbers must be finite and below 2**64 in size; fix {key} in the config.json")


def arch_from_config(cfg: Mapping[str, Any], name: str | None = None) -> TransformerArch:
    """Build the exact architecture from an HF config dict, every field it reads checked.

    Raises:
        WorkloadError: unsupported ``model_type``, a required key missing, or a field of the wrong type, out of
            its range (``arch.ARCH_LIMITS``) or inconsistent with another (heads that do not divide the hidden
            size, key/value heads that do not divide the heads, more experts per token than experts); the
            message names the key, its value and what is accepted.
    """
    if not isinstance(cfg, Mapping):
        raise WorkloadError(f"a config must be a dict or a path to config.json, got {type(cfg).__name__}")
    label = name or config_label(cfg)
    family = _family(cfg, label)
    r = _Reader(cfg, label)
    for key in _CONTEXT_KEYS:
        if cfg.get(key) is not None:
            r.count("max_position_embeddings", key)
    build = {"gpt2": _gpt_arch, "gptj": _gpt_arch, "bert": _bert_arch, "t5": _t5_arch}.get(family, _llama_arch)
    return build(r, cfg, family, label)


def _family(cfg: Mapping[str, Any], label: str) -> str:
    """The closed form's family of the config's ``model_type`` (``MODEL_TYPES``)."""
    model_type = cfg.get("model_type")
    if model_type is None:
        raise WorkloadError(f"config {label!r} is missing required key 'model_type'",
                            f"accepted model types: {', '.join(sorted(MODEL_TYPES))}")
    if not isinstance(model_type, str):
        raise WorkloadError(f"config {label!r}: model_type must be a string, got {show(model_type)}",
                            f"accepted model types: {', '.join(sorted(MODEL_TYPES))}")
    family = MODEL_TYPES.get(model_type)
    if family is None:
        _check_numbers(cfg, f"config {label!r}")  # the transformers path reads (and serializes) all of it
        raise UnsupportedModelType(f"unsupported model_type {show(model_type)} in config {label!r}",
                                   f"accepted: {', '.join(sorted(MODEL_TYPES))}; other models: pass the torch "
                                   "module, or install transformers (gpu-advisor[hf]) to build and trace it")
    return family


def _gpt_arch(r: _Reader, cfg: Mapping[str, Any], family: str, label: str) -> TransformerArch:
    """GPT-2 and GPT-J."""
    h = r.count("hidden_size", "n_embd", ..., "hidden_size")
    heads = r.count("num_heads", "n_head", ..., "num_attention_heads")
    common: dict[str, Any] = dict(
        num_layers=r.count("num_layers", "n_layer", ..., "num_hidden_layers"), hidden_size=h, num_heads=heads,
        num_kv_heads=heads, head_dim=r.head_dim(h, heads, "n_embd", "n_head"),
        intermediate_size=r.count("intermediate_size", "n_inner", 4 * h),
        vocab_size=r.count("vocab_size", "vocab_size"), gated_mlp=False, mlp_bias=True, norm_bias=True,
        activation=r.text("activation_function", "gelu_new"))
    if family == "gpt2":
        return TransformerArch(family, **common, tie_word_embeddings=r.flag("tie_word_embeddings", True),
                               qkv_bias=True, out_bias=True, dropout=r.probability("resid_pdrop", 0.1) > 0,
                               max_position_embeddings=r.count("max_position_embeddings", "n_positions", ...,
                                                               "max_position_embeddings"),
                               name=label)
    return TransformerArch(family, **common, tie_word_embeddings=r.flag("tie_word_embeddings", False),
                           lm_head_bias=True, parallel_block=True,
                           dropout=r.probability("resid_pdrop", 0.0) > 0, name=label)


def _bert_arch(r: _Reader, cfg: Mapping[str, Any], family: str, label: str) -> TransformerArch:
    """BERT: the bare encoder, or with the masked-LM head its ``architectures`` name."""
    h, heads = r.count("hidden_size", "hidden_size"), r.count("num_heads", "num_attention_heads")
    # BertForMaskedLM / BertForPreTraining carry the MLM head (logits over the vocabulary at every
    # position); the masked-LM class has no pooler (add_pooling_layer=False), pre-training keeps it
    archs = cfg.get("architectures") or []
    if not isinstance(archs, list) or not all(isinstance(a, str) for a in archs):
        raise WorkloadError(f"config {label!r}: architectures must be a list of class names, got {show(archs)}",
                            'e.g. ["BertForMaskedLM"]')
    mlm = any(a in ("BertForMaskedLM", "BertForPreTraining") for a in archs)
    pooler = not mlm or "BertForPreTraining" in archs
    return TransformerArch(
        family, num_layers=r.count("num_layers", "num_hidden_layers"), hidden_size=h, num_heads=heads,
        num_kv_heads=heads, head_dim=r.head_dim(h, heads, "hidden_size", "num_attention_heads"),
        intermediate_size=r.count("intermediate_size", "intermediate_size"),
        vocab_size=r.count("vocab_size", "vocab_size"), tie_word_embeddings=True, gated_mlp=False,
        qkv_bias=True, out_bias=True, mlp_bias=True, norm_bias=True, pooler=pooler, mlm_head=mlm,
        dropout=r.probability("hidden_dropout_prob", 0.1) > 0,
        max_position_embeddings=r.count("max_position_embeddings", "max_position_embeddings"),
        type_vocab_size=r.count("type_vocab_size", "type_vocab_size", 2), name=label)


def _t5_arch(r: _Reader, cfg: Mapping[str, Any], family: str, label: str) -> TransformerArch:
    """T5 (encoder-decoder)."""
    heads = r.count("num_heads", "num_heads")
    n_layers = r.count("num_layers", "num_layers")
    ff = r.text("feed_forward_proj", "relu")
    return TransformerArch(
        family, num_layers=n_layers, hidden_size=r.count("hidden_size", "d_model"), num_heads=heads,
        num_kv_heads=heads, head_dim=r.count("head_dim", "d_kv"), intermediate_size=r.count("intermediate_size",
                                                                                         "d_ff"),
        vocab_size=r.count("vocab_size", "vocab_size"), tie_word_embeddings=r.flag("tie_word_embeddings", True),
        gated_mlp=ff.startswith("gated"), dropout=r.probability("dropout_rate", 0.1) > 0,
        num_decoder_layers=r.count("num_decoder_layers", "num_decoder_layers", n_layers),
        relative_attention_num_buckets=r.count("relative_attention_num_buckets",
                                               "relative_attention_num_buckets", 32), name=label)


def _llama_arch(r: _Reader, cfg: Mapping[str, Any], family: str, label: str) -> TransformerArch:
    """Llama-like decoders (Llama, Mistral, Qwen2, Gemma, Mixtral)."""
    h, heads = r.count("hidden_size", "hidden_size"), r.count("num_heads", "num_attention_heads")
    attn_bias = r.flag("attention_bias", False)
    head_dim = (r.count("head_dim", "head_dim") if cfg.get("head_dim") is not None
                else r.head_dim(h, heads, "hidden_size", "num_attention_heads"))
    experts = r.count("num_experts", "num_local_experts", 0) if family == "mixtral" else 0
    return TransformerArch(
        family, num_layers=r.count("num_layers", "num_hidden_layers"), hidden_size=h, num_heads=heads,
        num_kv_heads=r.count("num_kv_heads", "num_key_value_heads", heads), head_dim=head_dim,
        intermediate_size=r.count("intermediate_size", "intermediate_size"),
        vocab_size=r.count("vocab_size", "vocab_size"),
        tie_word_embeddings=r.flag("tie_word_embeddings", family == "gemma"), gated_mlp=True,
        qkv_bias=family == "qwen2" or attn_bias, out_bias=attn_bias, mlp_bias=r.flag("mlp_bias", False),
        dropout=r.probability("attention_dropout", 0.0) > 0, num_experts=experts,
        experts_per_token=r.count("experts_per_token", "num_experts_per_tok", 2) if experts else 0, name=label)


def load_config(source: str | Path | Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """(config dict, label) from a dict, a path to config.json (or its folder), or a hub id.

    Raises:
        WorkloadError: unreadable file, bad JSON, or a hub id that cannot be resolved offline.
    """
    if isinstance(source, Mapping):
        return dict(source), config_label(source)
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
