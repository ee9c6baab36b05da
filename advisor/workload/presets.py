"""Named presets: the models of a deep-learning practitioner's week, with their aliases.

Transformer presets are published HF ``config.json`` values run through the analytic path (no
torch). CNN / vision / RNN presets are torch module definitions (torchvision's own, or
``advisor.workload.zoo``) built on the meta device and traced once per shape (torch imported
only then).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

from advisor.errors import UnknownModelError


@dataclass(frozen=True, slots=True)
class Preset:
    """A named model.

    Attributes:
        name: canonical id.
        kind: ``transformer`` (analytic) or ``module`` (traced).
        config: HF-style config (transformers) or ``{"builder": zoo name, ...}`` (modules).
        published_params: the published parameter count (tests hold us to it).
        source: where the figures come from.
        aliases: other spellings accepted.
        family: workload family for module presets (``cnn``, ``rnn``, ``vit``).
    """

    name: str
    kind: str
    config: dict[str, Any]
    published_params: int
    source: str
    aliases: tuple[str, ...] = ()
    family: str = ""

    def __post_init__(self) -> None:
        if not self.family:  # transformers: decoder / encoder / encoder-decoder from the model type
            kind = {"bert": "encoder", "t5": "encoder-decoder"}.get(self.config.get("model_type", ""), "decoder")
            object.__setattr__(self, "family", kind)


def _gpt2(layers: int, hidden: int, heads: int) -> dict[str, Any]:
    return {"model_type": "gpt2", "n_layer": layers, "n_embd": hidden, "n_head": heads, "vocab_size": 50257,
            "n_positions": 1024, "tie_word_embeddings": True, "resid_pdrop": 0.1}


def _llama(layers: int, hidden: int, heads: int, kv: int, inter: int, vocab: int, model_type: str = "llama",
           **extra: Any) -> dict[str, Any]:
    return {"model_type": model_type, "num_hidden_layers": layers, "hidden_size": hidden,
            "num_attention_heads": heads, "num_key_value_heads": kv, "intermediate_size": inter,
            "vocab_size": vocab, "tie_word_embeddings": False, **extra}


_HF = "https://huggingface.co/{}/blob/main/config.json"
_TV = "torchvision.models.{} (torchvision docs: num_params)"

_PRESETS: tuple[Preset, ...] = (
    # -- transformers (analytic) -----------------------------------------------------------------
    Preset("gpt2", "transformer", _gpt2(12, 768, 12), 124_439_808, _HF.format("openai-community/gpt2"),
           ("gpt2-small", "gpt-2", "openai-community/gpt2")),
    Preset("gpt2-medium", "transformer", _gpt2(24, 1024, 16), 354_823_168, _HF.format("openai-community/gpt2-medium")),
    Preset("gpt2-large", "transformer", _gpt2(36, 1280, 20), 774_030_080, _HF.format("openai-community/gpt2-large")),
    Preset("gpt2-xl", "transformer", _gpt2(48, 1600, 25), 1_557_611_200, _HF.format("openai-community/gpt2-xl")),
    # GPT-J's README quotes 6,053,381,344 (mesh-transformer-jax, which keeps per-shard copies of norms and
    # biases); the HF GPTJForCausalLM definition built here has 6,050,882,784.
    Preset("gpt-j-6b", "transformer",
           {"model_type": "gptj", "n_layer": 28, "n_embd": 4096, "n_head": 16, "vocab_size": 50400,
            "rotary_dim": 64, "n_positions": 2048, "tie_word_embeddings": False, "resid_pdrop": 0.0},
           6_050_882_784, _HF.format("EleutherAI/gpt-j-6b"), ("gptj-6b", "gpt-j", "eleutherai/gpt-j-6b")),
    Preset("bert-base", "transformer",
           {"model_type": "bert", "num_hidden_layers": 12, "hidden_size": 768, "num_attention_heads": 12,
            "intermediate_size": 3072, "vocab_size": 30522, "max_position_embeddings": 512, "type_vocab_size": 2},
           109_482_240, _HF.format("google-bert/bert-base-uncased") + " (BertModel)",
           ("bert-base-uncased", "bert-base-cased", "bert")),
    Preset("bert-large", "transformer",
           {"model_type": "bert", "num_hidden_layers": 24, "hidden_size": 1024, "num_attention_heads": 16,
            "intermediate_size": 4096, "vocab_size": 30522, "max_position_embeddings": 512, "type_vocab_size": 2},
           335_141_888, _HF.format("google-bert/bert-large-uncased") + " (BertModel)",
           ("bert-large-uncased", "bert-large-cased")),
    Preset("t5-base", "transformer",
           {"model_type": "t5", "num_layers": 12, "d_model": 768, "num_heads": 12, "d_kv": 64, "d_ff": 3072,
            "vocab_size": 32128, "feed_forward_proj": "relu", "tie_word_embeddings": True,
            "decoder_start_token_id": 0, "pad_token_id": 0, "eos_token_id": 1},
           222_903_552, _HF.format("google-t5/t5-base"), ("t5",)),
    Preset("llama-2-7b", "transformer", _llama(32, 4096, 32, 32, 11008, 32000, max_position_embeddings=4096),
           6_738_415_616,
           _HF.format("meta-llama/Llama-2-7b-hf"), ("llama2-7b",)),
    Preset("llama-2-13b", "transformer", _llama(40, 5120, 40, 40, 13824, 32000, max_position_embeddings=4096),
           13_015_864_320,
           _HF.format("meta-llama/Llama-2-13b-hf"), ("llama2-13b",)),
    Preset("llama-2-70b", "transformer", _llama(80, 8192, 64, 8, 28672, 32000, max_position_embeddings=4096),
           68_976_648_192,
           _HF.format("meta-llama/Llama-2-70b-hf"), ("llama2-70b",)),
    Preset("llama-3-8b", "transformer", _llama(32, 4096, 32, 8, 14336, 128256, max_position_embeddings=8192),
           8_030_261_248,
           _HF.format("meta-llama/Meta-Llama-3-8B"), ("llama3-8b", "meta-llama-3-8b")),
    Preset("llama-3.1-8b", "transformer",
           _llama(32, 4096, 32, 8, 14336, 128256, max_position_embeddings=131072), 8_030_261_248,
           _HF.format("meta-llama/Llama-3.1-8B"), ("llama3.1-8b", "meta-llama-3.1-8b")),
    Preset("llama-3-70b", "transformer", _llama(80, 8192, 64, 8, 28672, 128256, max_position_embeddings=8192),
           70_553_706_496,
           _HF.format("meta-llama/Meta-Llama-3-70B"), ("llama3-70b", "meta-llama-3-70b")),
    Preset("llama-3.1-70b", "transformer",
           _llama(80, 8192, 64, 8, 28672, 128256, max_position_embeddings=131072), 70_553_706_496,
           _HF.format("meta-llama/Llama-3.1-70B"), ("llama3.1-70b", "meta-llama-3.1-70b")),
    Preset("llama-3.1-405b", "transformer", _llama(126, 16384, 128, 8, 53248, 128256, max_position_embeddings=131072),
           405_853_388_800,
           _HF.format("meta-llama/Llama-3.1-405B"), ("llama3.1-405b", "meta-llama-3.1-405b")),
    Preset("mistral-7b", "transformer", _llama(32, 4096, 32, 8, 14336, 32000, "mistral", max_position_embeddings=32768),
           7_241_732_096,
           _HF.format("mistralai/Mistral-7B-v0.1"), ("mistral",)),
    Preset("mixtral-8x7b", "transformer",
           _llama(32, 4096, 32, 8, 14336, 32000, "mixtral", num_local_experts=8, num_experts_per_tok=2,
                  max_position_embeddings=32768),
           46_702_792_704, _HF.format("mistralai/Mixtral-8x7B-v0.1"), ("mixtral",)),
    Preset("qwen2.5-7b", "transformer", _llama(28, 3584, 28, 4, 18944, 152064, "qwen2", max_position_embeddings=131072),
           7_615_616_512,
           _HF.format("Qwen/Qwen2.5-7B"), ("qwen-2.5-7b", "qwen25-7b")),
    # -- traced torch modules ---------------------------------------------------------------------
    Preset("mnist-cnn", "module", {"builder": "mnist-cnn", "image_size": 28, "channels": 1}, 93_322,
           "Keras CNN tutorial layout (3x3 valid convs 32-64-64, 2x2 pools, Dense 64, Dense 10)",
           ("mnist",), "cnn"),
    Preset("lstm-lm", "module", {"builder": "lstm-lm", "seq_len": 20}, 389_096,
           "Embedding 1000x128 -> LSTM 128 (PyTorch: two bias vectors) -> Dense 1000", ("lstm",), "rnn"),
    Preset("vgg16-transfer", "module", {"builder": "vgg16-transfer", "image_size": 224}, 21_140_042,
           "torchvision VGG16 features (14,714,688) + Flatten(25088) + Dense 256 + Dense 10; base frozen",
           ("vgg16-finetune",), "cnn"),
    Preset("resnet18", "module", {"builder": "resnet18", "image_size": 224}, 11_689_512, _TV.format("resnet18"),
           family="cnn"),
    Preset("resnet34", "module", {"builder": "resnet34", "image_size": 224}, 21_797_672, _TV.format("resnet34"),
           family="cnn"),
    Preset("resnet50", "module", {"builder": "resnet50", "image_size": 224}, 25_557_032, _TV.format("resnet50"),
           family="cnn"),
    Preset("resnet101", "module", {"builder": "resnet101", "image_size": 224}, 44_549_160, _TV.format("resnet101"),
           family="cnn"),
    Preset("resnet152", "module", {"builder": "resnet152", "image_size": 224}, 60_192_808, _TV.format("resnet152"),
           family="cnn"),
    Preset("vgg16", "module", {"builder": "vgg16", "image_size": 224}, 138_357_544, _TV.format("vgg16"),
           family="cnn"),
    Preset("vgg19", "module", {"builder": "vgg19", "image_size": 224}, 143_667_240, _TV.format("vgg19"),
           family="cnn"),
    Preset("mobilenet-v2", "module", {"builder": "mobilenet_v2", "image_size": 224}, 3_504_872,
           _TV.format("mobilenet_v2"), family="cnn"),
    Preset("efficientnet-b0", "module", {"builder": "efficientnet_b0", "image_size": 224}, 5_288_548,
           _TV.format("efficientnet_b0"), family="cnn"),
    Preset("vit-b16", "module", {"builder": "vit_b_16", "image_size": 224}, 86_567_656, _TV.format("vit_b_16"),
           ("vit-base-patch16-224",), "vit"),
    Preset("vit-l16", "module", {"builder": "vit_l_16", "image_size": 224}, 304_326_632, _TV.format("vit_l_16"),
           ("vit-large-patch16-224",), "vit"),
)

PRESETS: dict[str, Preset] = {p.name: p for p in _PRESETS}

_ORGS = ("meta-llama", "openai-community", "mistralai", "qwen", "eleutherai", "google-bert", "google-t5",
         "google", "openai", "torchvision", "timm")


def _norm(name: str) -> str:
    text = name.strip().lower()
    head, sep, tail = text.partition("/")
    if sep and head in _ORGS:
        text = tail
    text = re.sub(r"[-_ ]?(hf|instruct|chat|base-uncased)$", "", text) if text not in PRESETS else text
    text = re.sub(r"[-_ ]v\d+\.\d+$", "", text)
    return re.sub(r"[^a-z0-9]", "", text)


def _index() -> dict[str, str]:
    index: dict[str, str] = {}
    for p in _PRESETS:
        for alias in (p.name, *p.aliases):
            index.setdefault(_norm(alias), p.name)
    return index


_INDEX = _index()


def list_presets() -> list[str]:
    """Canonical preset names, in catalog order."""
    return [p.name for p in _PRESETS]


def resolve_preset(name: str) -> str:
    """Canonical preset name for ``name`` (case, punctuation, hub org and -hf/-Instruct suffixes ignored).

    Raises:
        UnknownModelError: no preset matches; the message lists the closest names.
    """
    if not isinstance(name, str) or not name.strip():
        raise UnknownModelError(f"model name must be a non-empty string, got {name!r}",
                                "run advisor.workload.list_presets() for the accepted names")
    key = _norm(name)
    if key in _INDEX:
        return _INDEX[key]
    close = difflib.get_close_matches(key, list(_INDEX), n=5, cutoff=0.5)
    names = list(dict.fromkeys(_INDEX[c] for c in close))
    hint = (f"closest: {', '.join(names)}" if names else "no close match") + \
        "; or pass a config.json path/dict or a torch.nn.Module"
    from advisor.files import shown_path

    raise UnknownModelError(f"unknown model {shown_path(name)}", hint)


def context_limit(config: dict[str, Any]) -> int | None:
    """The longest context a transformer config was built for (``max_position_embeddings`` / ``n_positions``)."""
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def context_warning(name: str, seq_len: int | None, gen_len: int | None, limit: int | None) -> str | None:
    """A warning when ``seq_len`` (+ ``gen_len``) runs past ``limit``, the model's trained context; else ``None``.

    Rotary / relative models still run there (memory and time are computed), but outside what they were
    trained for; learned position tables (GPT-2, BERT) cannot, and the builder refuses those.
    """
    if not limit or not seq_len:
        return None
    total = seq_len + (gen_len or 0)
    if total <= limit:
        return None
    what = f"seq_len {seq_len}" + (f" + gen_len {gen_len}" if gen_len else "")
    return (f"warning: {what} = {total:,} tokens exceeds {name}'s max_position_embeddings ({limit:,}): beyond the "
            "context it was trained for (quality not assured without RoPE scaling / long-context fine-tuning); "
            "memory and time are computed for it anyway")


def get_preset(name: str) -> Preset:
    """The ``Preset`` for any accepted spelling (see ``resolve_preset``)."""
    return PRESETS[resolve_preset(name)]
