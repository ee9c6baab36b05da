"""Torch module definitions behind the traced presets, and small GPT-2 / Llama-style models.

torch and torchvision are imported inside the functions only: importing this module is free.
"""

from __future__ import annotations

import math
from typing import Any

from advisor.errors import UnknownModelError

TORCHVISION = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "vgg16", "vgg19", "mobilenet_v2",
               "efficientnet_b0", "vit_b_16", "vit_l_16")
BUILDERS = ("mnist-cnn", "lstm-lm", "vgg16-transfer", *TORCHVISION)


def build(name: str, device: str = "meta", **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    """(module, facts) for a zoo name, built on ``device`` (``meta``: no memory).

    ``facts`` has ``frozen_prefixes`` (parameter-name prefixes that are frozen), ``input``
    (``image`` or ``tokens``), ``channels``/``vocab_size``.

    Raises:
        UnknownModelError: no such builder.
    """
    import torch

    with torch.device(device):
        if name == "mnist-cnn":
            return mnist_cnn(), {"input": "image", "channels": 1, "frozen_prefixes": ()}
        if name == "lstm-lm":
            return LstmLM(), {"input": "tokens", "vocab_size": 1000, "frozen_prefixes": ()}
        if name == "vgg16-transfer":
            return vgg16_transfer(), {"input": "image", "channels": 3, "frozen_prefixes": ("0.",)}
        if name in TORCHVISION:
            import torchvision

            return getattr(torchvision.models, name)(weights=None, **kwargs), {
                "input": "image", "channels": 3, "frozen_prefixes": ()}
    raise UnknownModelError(f"unknown zoo model {name!r}", f"accepted: {', '.join(BUILDERS)}")


def mnist_cnn() -> Any:
    """Keras CNN tutorial layout on 28x28x1: 3x3 valid convs 32-64-64, 2x2 max pools, Dense 64, Dense 10."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3), nn.ReLU(),
        nn.Flatten(), nn.Linear(3 * 3 * 64, 64), nn.ReLU(), nn.Linear(64, 10),
    )


def vgg16_transfer(num_classes: int = 10) -> Any:
    """torchvision VGG16 conv base (no top; frozen) + Flatten + Dense 256 + ReLU + Dense ``num_classes``."""
    import torchvision
    from torch import nn

    base = torchvision.models.vgg16(weights=None).features
    for p in base.parameters():
        p.requires_grad_(False)
    return nn.Sequential(base, nn.Flatten(), nn.Linear(512 * 7 * 7, 256), nn.ReLU(), nn.Linear(256, num_classes))


def _module_base() -> Any:
    from torch import nn

    return nn.Module


class _Lazy:
    """Defers class creation until torch is imported (classes subclass nn.Module)."""

    def __init__(self, factory: Any) -> None:
        self._factory = factory
        self._cls: Any = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._cls is None:
            self._cls = self._factory()
        return self._cls(*args, **kwargs)


def _lstm_lm_cls() -> Any:
    import torch
    from torch import nn

    class LstmLMModule(nn.Module):
        """Embedding 1000x128 -> LSTM 128 -> Dense 1000 over every position (Keras text-generation layout)."""

        def __init__(self, vocab_size: int = 1000, embed: int = 128, hidden: int = 128) -> None:
            super().__init__()
            self.embedding = nn.Embedding(vocab_size, embed)
            self.lstm = nn.LSTM(embed, hidden, batch_first=True)
            self.head = nn.Linear(hidden, vocab_size)

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            out, _ = self.lstm(self.embedding(tokens))
            return self.head(out)

    return LstmLMModule


LstmLM = _Lazy(_lstm_lm_cls)


def _gpt_cls() -> Any:
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Block(nn.Module):
        def __init__(self, hidden: int, heads: int, sdpa: bool) -> None:
            super().__init__()
            self.heads, self.sdpa = heads, sdpa
            self.ln_1 = nn.LayerNorm(hidden)
            self.c_attn = nn.Linear(hidden, 3 * hidden)
            self.c_proj = nn.Linear(hidden, hidden)
            self.ln_2 = nn.LayerNorm(hidden)
            self.c_fc = nn.Linear(hidden, 4 * hidden)
            self.act = nn.GELU(approximate="tanh")
            self.mlp_proj = nn.Linear(4 * hidden, hidden)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b, s, h = x.shape
            q, k, v = self.c_attn(self.ln_1(x)).split(h, dim=2)
            q, k, v = (t.view(b, s, self.heads, h // self.heads).transpose(1, 2) for t in (q, k, v))
            if self.sdpa:
                y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            else:
                att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(h // self.heads))
                mask = torch.ones(s, s, dtype=torch.bool, device=x.device).tril()
                att = F.softmax(att.masked_fill(~mask, float("-inf")), dim=-1)
                y = att @ v
            x = x + self.c_proj(y.transpose(1, 2).reshape(b, s, h))
            return x + self.mlp_proj(self.act(self.c_fc(self.ln_2(x))))

    class TinyGPT(nn.Module):
        """GPT-2 architecture (pre-LN, learned positions, tied LM head, biases), without dropout.

        ``forward(tokens, targets=None)`` returns the logits, or the mean cross-entropy when
        ``targets`` is given.
        """

        def __init__(self, vocab_size: int = 50257, n_positions: int = 1024, hidden: int = 768,
                     layers: int = 12, heads: int = 12, attention: str = "eager") -> None:
            super().__init__()
            self.wte = nn.Embedding(vocab_size, hidden)
            self.wpe = nn.Embedding(n_positions, hidden)
            self.h = nn.ModuleList(Block(hidden, heads, attention != "eager") for _ in range(layers))
            self.ln_f = nn.LayerNorm(hidden)
            self.lm_head = nn.Linear(hidden, vocab_size, bias=False)
            self.lm_head.weight = self.wte.weight
            self.config = {"model_type": "gpt2", "n_layer": layers, "n_embd": hidden, "n_head": heads,
                           "vocab_size": vocab_size, "n_positions": n_positions, "resid_pdrop": 0.0}

        def forward(self, tokens: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
            pos = torch.arange(tokens.shape[1], device=tokens.device)
            x = self.wte(tokens) + self.wpe(pos)
            for block in self.h:
                x = block(x)
            logits = self.lm_head(self.ln_f(x))
            if targets is None:
                return logits
            return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())

    return TinyGPT


TinyGPT = _Lazy(_gpt_cls)


def _llama_cls() -> Any:
    import torch
    import torch.nn.functional as F
    from torch import nn

    class RMSNorm(nn.Module):
        def __init__(self, hidden: int, eps: float = 1e-5) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.ones(hidden))
            self.eps = eps

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)

    def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x1, x2 = x.chunk(2, dim=-1)
        return x * cos + torch.cat((-x2, x1), dim=-1) * sin

    class Block(nn.Module):
        def __init__(self, hidden: int, heads: int, kv_heads: int, inter: int) -> None:
            super().__init__()
            self.heads, self.kv_heads, self.head_dim = heads, kv_heads, hidden // heads
            self.input_layernorm = RMSNorm(hidden)
            self.q_proj = nn.Linear(hidden, hidden, bias=False)
            self.k_proj = nn.Linear(hidden, kv_heads * self.head_dim, bias=False)
            self.v_proj = nn.Linear(hidden, kv_heads * self.head_dim, bias=False)
            self.o_proj = nn.Linear(hidden, hidden, bias=False)
            self.post_attention_layernorm = RMSNorm(hidden)
            self.gate_proj = nn.Linear(hidden, inter, bias=False)
            self.up_proj = nn.Linear(hidden, inter, bias=False)
            self.down_proj = nn.Linear(inter, hidden, bias=False)

        def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
            b, s, h = x.shape
            n = self.input_layernorm(x)
            q = self.q_proj(n).view(b, s, self.heads, self.head_dim).transpose(1, 2)
            k = self.k_proj(n).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
            v = self.v_proj(n).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
            q, k = rotate(q, cos, sin), rotate(k, cos, sin)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.kv_heads != self.heads)
            x = x + self.o_proj(y.transpose(1, 2).reshape(b, s, h))
            n = self.post_attention_layernorm(x)
            return x + self.down_proj(F.silu(self.gate_proj(n)) * self.up_proj(n))

    class TinyLlama(nn.Module):
        """Llama architecture (RMSNorm, rotary, GQA, SwiGLU, untied head); ``forward(tokens, targets=None)``."""

        def __init__(self, vocab_size: int = 32000, hidden: int = 256, layers: int = 2, heads: int = 8,
                     kv_heads: int = 2, intermediate: int = 688) -> None:
            super().__init__()
            self.embed_tokens = nn.Embedding(vocab_size, hidden)
            self.layers = nn.ModuleList(Block(hidden, heads, kv_heads, intermediate) for _ in range(layers))
            self.norm = RMSNorm(hidden)
            self.lm_head = nn.Linear(hidden, vocab_size, bias=False)
            self.head_dim = hidden // heads
            self.config = {"model_type": "llama", "num_hidden_layers": layers, "hidden_size": hidden,
                           "num_attention_heads": heads, "num_key_value_heads": kv_heads,
                           "intermediate_size": intermediate, "vocab_size": vocab_size, "tie_word_embeddings": False}

        def forward(self, tokens: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
            s = tokens.shape[1]
            inv = 1.0 / (10000 ** (torch.arange(0, self.head_dim, 2, device=tokens.device).float() / self.head_dim))
            freqs = torch.outer(torch.arange(s, device=tokens.device).float(), inv)
            emb = torch.cat((freqs, freqs), dim=-1)
            x = self.embed_tokens(tokens)
            cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)
            for block in self.layers:
                x = block(x, cos, sin)
            logits = self.lm_head(self.norm(x))
            if targets is None:
                return logits
            return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())

    return TinyLlama


TinyLlama = _Lazy(_llama_cls)
