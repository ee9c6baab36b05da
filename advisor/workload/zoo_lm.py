"""The language models of ``validate``'s zoo (``advisor.workload.zoo``): GPT-2, BERT and Llama-style, with KV caches.

Each class subclasses ``nn.Module``, so it is made on first use (``Lazy``): importing this module is free.
"""

from __future__ import annotations

import functools
import math
from types import SimpleNamespace
from typing import Any


class Lazy:
    """Defers class creation until torch is imported (classes subclass nn.Module)."""

    def __init__(self, factory: Any) -> None:
        self._factory = factory
        self._cls: Any = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._cls is None:
            self._cls = self._factory()
        return self._cls(*args, **kwargs)



# ------------------------------------------------------------------------------ transformers
# KV caches: ``caches`` is one dict per block; a block appends its keys and values (``k``, ``v``:
# batch x kv heads x positions x head dim) to its dict, so a later call attends to every earlier token.


def _cache_len(caches: list[dict[str, Any]] | None) -> int:
    """Positions already in the caches (the position of the first token of this call)."""
    return int(caches[0]["k"].shape[2]) if caches and "k" in caches[0] else 0


@functools.cache
def _attention() -> SimpleNamespace:
    """Helpers the transformers share (attention, their loss, decoding), made on first use (they need torch)."""
    import torch
    import torch.nn.functional as F

    def extend(cache: dict[str, Any] | None, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """This call's keys and values after the cached ones (and stored back), or as they are without a cache."""
        if cache is None:
            return k, v
        if "k" in cache:
            k, v = torch.cat((cache["k"], k), 2), torch.cat((cache["v"], v), 2)
        cache["k"], cache["v"] = k, v
        return k, v

    def causal_mask(queries: int, keys: int, device: Any) -> torch.Tensor:
        """True where a query may look: the last ``queries`` of ``keys`` positions, each at itself and before."""
        return torch.ones(queries, keys, dtype=torch.bool, device=device).tril(keys - queries)

    def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool, gqa: bool = False) -> torch.Tensor:
        queries, keys = q.shape[-2], k.shape[-2]
        if not causal or queries == 1:  # one new token sees the whole cache
            return F.scaled_dot_product_attention(q, k, v, enable_gqa=gqa)
        if queries == keys:
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
        # a prefill after cached tokens: is_causal would align the mask top-left, not bottom-right
        mask = causal_mask(queries, keys, q.device)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)

    def generate(model: Any, tokens: torch.Tensor, gen_len: int) -> torch.Tensor:
        """Greedy decoding with a KV cache: a prefill of ``tokens``, then ``gen_len`` one-token steps."""
        caches: list[dict[str, Any]] = [{} for _ in model.blocks]
        logits: torch.Tensor = model(tokens, caches=caches)
        for _ in range(gen_len):
            logits = model(logits[:, -1:].argmax(-1), caches=caches)
        return logits

    def logits_or_loss(logits: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
        """The logits, or with ``targets`` the mean cross-entropy over every position (in fp32)."""
        if targets is None:
            return logits
        return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())

    return SimpleNamespace(extend=extend, causal_mask=causal_mask, sdpa=sdpa, generate=generate,
                           logits_or_loss=logits_or_loss)


@functools.cache
def _gpt_block_cls() -> Any:
    import torch
    import torch.nn.functional as F
    from torch import nn

    att = _attention()

    class Block(nn.Module):
        def __init__(self, hidden: int, heads: int, intermediate: int, sdpa: bool) -> None:
            super().__init__()
            self.heads, self.sdpa = heads, sdpa
            self.ln_1 = nn.LayerNorm(hidden)
            self.c_attn = nn.Linear(hidden, 3 * hidden)
            self.c_proj = nn.Linear(hidden, hidden)
            self.ln_2 = nn.LayerNorm(hidden)
            self.c_fc = nn.Linear(hidden, intermediate)
            self.act = nn.GELU(approximate="tanh")
            self.mlp_proj = nn.Linear(intermediate, hidden)

        def forward(self, x: torch.Tensor, cache: dict[str, Any] | None = None) -> torch.Tensor:
            b, s, h = x.shape
            q, k, v = self.c_attn(self.ln_1(x)).split(h, dim=2)
            q, k, v = (t.view(b, s, self.heads, h // self.heads).transpose(1, 2) for t in (q, k, v))
            k, v = att.extend(cache, k, v)
            if self.sdpa:
                y = att.sdpa(q, k, v, causal=True)
            else:
                scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(h // self.heads))
                mask = att.causal_mask(s, k.shape[2], x.device)
                y = F.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1) @ v
            x = x + self.c_proj(y.transpose(1, 2).reshape(b, s, h))
            out: torch.Tensor = x + self.mlp_proj(self.act(self.c_fc(self.ln_2(x))))
            return out

    return Block


def _gpt_cls() -> Any:
    import torch
    from torch import nn

    att = _attention()
    Block = _gpt_block_cls()

    class TinyGPT(nn.Module):
        """GPT-2 architecture (pre-LN, learned positions, tied LM head, biases), without dropout.

        ``forward(tokens, targets=None, caches=None)`` returns the logits, or the mean cross-entropy when
        ``targets`` is given; ``caches`` (one dict per block) makes it a KV-cached decoding step.
        """

        def __init__(self, vocab_size: int = 50257, n_positions: int = 1024, hidden: int = 768,
                     layers: int = 12, heads: int = 12, attention: str = "eager",
                     intermediate: int | None = None) -> None:
            super().__init__()
            inner = intermediate or 4 * hidden
            self.wte = nn.Embedding(vocab_size, hidden)
            self.wpe = nn.Embedding(n_positions, hidden)
            self.h = nn.ModuleList(Block(hidden, heads, inner, attention != "eager") for _ in range(layers))
            self.ln_f = nn.LayerNorm(hidden)
            self.lm_head = nn.Linear(hidden, vocab_size, bias=False)
            self.lm_head.weight = self.wte.weight
            self.config = {"model_type": "gpt2", "n_layer": layers, "n_embd": hidden, "n_head": heads,
                           "vocab_size": vocab_size, "n_positions": n_positions, "resid_pdrop": 0.0,
                           "activation_function": "gelu_pytorch_tanh"}  # nn.GELU(approximate="tanh"): fused
            if inner != 4 * hidden:
                self.config["n_inner"] = inner

        @property
        def blocks(self) -> nn.ModuleList:
            """The repeated blocks (what gradient checkpointing wraps; one KV cache each)."""
            return self.h

        def forward(self, tokens: torch.Tensor, targets: torch.Tensor | None = None,
                    caches: list[dict[str, Any]] | None = None) -> torch.Tensor:
            pos0 = _cache_len(caches)
            pos = torch.arange(pos0, pos0 + tokens.shape[1], device=tokens.device)
            x = self.wte(tokens) + self.wpe(pos)
            for i, block in enumerate(self.h):
                x = block(x) if caches is None else block(x, caches[i])
            logits: torch.Tensor = self.lm_head(self.ln_f(x))
            out: torch.Tensor = att.logits_or_loss(logits, targets)
            return out

        generate = att.generate  # generate(tokens, gen_len): greedy decoding with the KV caches

    return TinyGPT


TinyGPT = Lazy(_gpt_cls)


def _bert_cls() -> Any:
    import torch
    import torch.nn.functional as F
    from torch import nn

    att = _attention()

    class Layer(nn.Module):
        def __init__(self, hidden: int, heads: int, intermediate: int) -> None:
            super().__init__()
            self.heads = heads
            self.qkv = nn.Linear(hidden, 3 * hidden)
            self.attn_out = nn.Linear(hidden, hidden)
            self.attn_norm = nn.LayerNorm(hidden)
            self.intermediate = nn.Linear(hidden, intermediate)
            self.output = nn.Linear(intermediate, hidden)
            self.output_norm = nn.LayerNorm(hidden)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b, s, h = x.shape
            q, k, v = self.qkv(x).view(b, s, 3, self.heads, h // self.heads).permute(2, 0, 3, 1, 4)
            y = F.scaled_dot_product_attention(q, k, v)  # bidirectional: no mask
            x = self.attn_norm(x + self.attn_out(y.transpose(1, 2).reshape(b, s, h)))
            out: torch.Tensor = self.output_norm(x + self.output(F.gelu(self.intermediate(x), approximate="tanh")))
            return out

    class TinyBert(nn.Module):
        """BERT-style encoder (post-LN, learned positions, bidirectional) with a tied masked-LM head, no dropout.

        Left out of BERT: token-type embeddings, the embedding LayerNorm, the pooler, and the MLM head's dense
        layer (a final LayerNorm stands in for its transform).  ``forward(tokens, targets=None)`` returns the
        logits at every position, or the mean cross-entropy when ``targets`` is given.
        """

        def __init__(self, vocab_size: int = 30522, n_positions: int = 512, hidden: int = 768, layers: int = 12,
                     heads: int = 12, intermediate: int = 3072) -> None:
            super().__init__()
            self.word_embeddings = nn.Embedding(vocab_size, hidden)
            self.position_embeddings = nn.Embedding(n_positions, hidden)
            self.layer = nn.ModuleList(Layer(hidden, heads, intermediate) for _ in range(layers))
            self.norm = nn.LayerNorm(hidden)
            self.decoder = nn.Linear(hidden, vocab_size, bias=False)
            self.decoder.weight = self.word_embeddings.weight

        @property
        def blocks(self) -> nn.ModuleList:
            """The repeated blocks (what gradient checkpointing wraps)."""
            return self.layer

        def forward(self, tokens: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
            pos = torch.arange(tokens.shape[1], device=tokens.device)
            x = self.word_embeddings(tokens) + self.position_embeddings(pos)
            for layer in self.layer:
                x = layer(x)
            logits: torch.Tensor = self.decoder(self.norm(x))
            out: torch.Tensor = att.logits_or_loss(logits, targets)
            return out

    return TinyBert


TinyBert = Lazy(_bert_cls)


@functools.cache
def _llama_parts() -> SimpleNamespace:
    """The Llama block and its RMSNorm (classes made on first use)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    att = _attention()

    class RMSNorm(nn.Module):
        def __init__(self, hidden: int, eps: float = 1e-5) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.ones(hidden))
            self.eps = eps

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            # written out as Hugging Face's LlamaRMSNorm is (fp32 statistics, cast back, then the scale):
            # the op sequence, saved tensors and dispatch count the estimator models
            dtype = x.dtype
            h = x.to(torch.float32)
            h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
            return self.weight * h.to(dtype)

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

        def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                    cache: dict[str, Any] | None = None) -> torch.Tensor:
            b, s, h = x.shape
            n = self.input_layernorm(x)
            q = self.q_proj(n).view(b, s, self.heads, self.head_dim).transpose(1, 2)
            k = self.k_proj(n).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
            v = self.v_proj(n).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
            q, k = rotate(q, cos, sin), rotate(k, cos, sin)
            k, v = att.extend(cache, k, v)
            y = att.sdpa(q, k, v, causal=True, gqa=self.kv_heads != self.heads)
            x = x + self.o_proj(y.transpose(1, 2).reshape(b, s, h))
            n = self.post_attention_layernorm(x)
            out: torch.Tensor = x + self.down_proj(F.silu(self.gate_proj(n)) * self.up_proj(n))
            return out

    return SimpleNamespace(RMSNorm=RMSNorm, Block=Block)


def _llama_cls() -> Any:
    import torch
    from torch import nn

    att = _attention()
    RMSNorm, Block = _llama_parts().RMSNorm, _llama_parts().Block

    class TinyLlama(nn.Module):
        """Llama architecture (RMSNorm, rotary, GQA, SwiGLU, untied head).

        ``forward(tokens, targets=None, caches=None)`` as :class:`TinyGPT`'s.
        """

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

        @property
        def blocks(self) -> nn.ModuleList:
            """The repeated blocks (what gradient checkpointing wraps; one KV cache each)."""
            return self.layers

        def forward(self, tokens: torch.Tensor, targets: torch.Tensor | None = None,
                    caches: list[dict[str, Any]] | None = None) -> torch.Tensor:
            pos0, s = _cache_len(caches), tokens.shape[1]
            inv = 1.0 / (10000 ** (torch.arange(0, self.head_dim, 2, device=tokens.device).float() / self.head_dim))
            freqs = torch.outer(torch.arange(pos0, pos0 + s, device=tokens.device).float(), inv)
            emb = torch.cat((freqs, freqs), dim=-1)
            x = self.embed_tokens(tokens)
            cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)
            for i, block in enumerate(self.layers):
                x = block(x, cos, sin) if caches is None else block(x, cos, sin, caches[i])
            logits: torch.Tensor = self.lm_head(self.norm(x))
            out: torch.Tensor = att.logits_or_loss(logits, targets)
            return out

        generate = att.generate  # generate(tokens, gen_len): greedy decoding with the KV caches

    return TinyLlama


TinyLlama = Lazy(_llama_cls)
