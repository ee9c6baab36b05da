"""The shape of a transformer (``TransformerArch``): enough to count its parameters, FLOPs and bytes exactly."""

from __future__ import annotations

from dataclasses import dataclass

from advisor.errors import WorkloadError
from advisor.numbers import show, whole_number

DECODERS = ("gpt2", "gptj", "llama", "mistral", "qwen2", "gemma", "mixtral")
FAMILIES = (*DECODERS, "bert", "t5")
LORA_TARGETS = ("q", "k", "v", "o", "gate", "up", "down")

#: The accepted range of each count of a ``TransformerArch`` (the one table; config.py checks a config's keys
#: against it too).  The bounds are far beyond any published model (the largest have ~130 blocks, hidden 25,600,
#: heads 128, vocabulary 256k, 384 experts, 10M-token contexts) and keep every parameter, FLOP and byte count
#: of the largest accepted shape below 1e30, far from float overflow.
ARCH_LIMITS: dict[str, tuple[int, int]] = {
    "num_layers": (1, 4096),
    "hidden_size": (1, 2**18),
    "num_heads": (1, 2**14),
    "num_kv_heads": (1, 2**14),
    "head_dim": (1, 2**14),
    "intermediate_size": (1, 2**20),
    "vocab_size": (1, 2**24),
    "max_position_embeddings": (0, 2**26),
    "num_experts": (0, 4096),
    "experts_per_token": (0, 4096),
    "num_decoder_layers": (0, 4096),
    "type_vocab_size": (0, 1024),
    "relative_attention_num_buckets": (0, 4096),
}
_FLAGS = ("tie_word_embeddings", "gated_mlp", "qkv_bias", "out_bias", "mlp_bias", "norm_bias", "lm_head_bias",
          "parallel_block", "pooler", "dropout", "mlm_head")


def check_arch_field(field: str, value: object, *, key: str | None = None, where: str | None = None) -> int:
    """``value`` if it is a whole number in ``ARCH_LIMITS[field]``; else a ``WorkloadError`` naming ``key``.

    Args:
        field: the ``TransformerArch`` field.
        value: what was given.
        key: the name the user wrote (a config's ``n_embd`` for ``hidden_size``); default ``field``.
        where: what holds it (``config 'my-model'``).

    Raises:
        WorkloadError: not an int (a bool, float or string is refused) or outside the range.
    """
    low, high = ARCH_LIMITS[field]
    hint = None if key in (None, field) else f"{key} is the model's {field.replace('_', ' ')}"
    return whole_number(key or field, value, minimum=low, maximum=high, error=WorkloadError, where=where,
                        hint=hint)


@dataclass(frozen=True, slots=True)
class TransformerArch:
    """Shape of a transformer, enough to count everything exactly.

    Attributes:
        family: one of ``FAMILIES``.
        num_layers: blocks (encoder blocks for t5).
        hidden_size, num_heads, num_kv_heads, head_dim, intermediate_size, vocab_size: as in HF configs.
        tie_word_embeddings: the LM head shares the input embedding.
        max_position_embeddings: learned position table rows (gpt2, bert); 0 for rotary/relative.
        num_experts, experts_per_token: MoE (0 for dense).
        num_decoder_layers: t5 decoder blocks.
        type_vocab_size: bert token-type table rows.
        relative_attention_num_buckets: t5 relative position buckets (first block of each stack).
        gated_mlp: SwiGLU/GeGLU MLP (gate, up, down) instead of fc1/fc2.
        qkv_bias, out_bias, mlp_bias, norm_bias, lm_head_bias: which layers carry biases
            (``norm_bias`` false means RMSNorm / T5 norm: a scale only).
        parallel_block: GPT-J style (attention and MLP in parallel, one norm per block).
        pooler: bert pooler (dense h x h).
        dropout: dropout layers active in training (masks saved for backward).
        mlm_head: a BERT masked-LM head (``BertForMaskedLM``: dense h x h + GELU + LayerNorm, then a decoder
            tied to the word embeddings with its own bias, logits at every position); no pooler then.
        activation: the MLP's activation as the config names it (``activation_function`` / ``hidden_act``);
            ``advisor.workload.transformer_ops.UNFUSED_ACTIVATIONS`` lists those Hugging Face writes as a chain
            of elementwise kernels (GPT-2's ``gelu_new``); any other runs as one fused kernel.
        name: label.
    """

    family: str
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool
    gated_mlp: bool
    qkv_bias: bool = False
    out_bias: bool = False
    mlp_bias: bool = False
    norm_bias: bool = False
    lm_head_bias: bool = False
    parallel_block: bool = False
    pooler: bool = False
    dropout: bool = False
    max_position_embeddings: int = 0
    num_experts: int = 0
    experts_per_token: int = 0
    num_decoder_layers: int = 0
    type_vocab_size: int = 0
    relative_attention_num_buckets: int = 0
    mlm_head: bool = False
    activation: str = ""
    name: str = "transformer"

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise WorkloadError(f"unknown transformer family {self.family!r}", f"accepted: {', '.join(FAMILIES)}")
        for key in ARCH_LIMITS:
            check_arch_field(key, getattr(self, key), where=self.name)
        for key in _FLAGS:
            if not isinstance(getattr(self, key), bool):
                raise WorkloadError(f"{self.name}: {key} must be true or false, got {show(getattr(self, key))}")
        if self.num_heads % self.num_kv_heads:
            raise WorkloadError(f"{self.name}: num_heads {self.num_heads} is not a multiple of "
                                f"num_kv_heads {self.num_kv_heads}",
                                "each key/value head serves a whole group of query heads (num_attention_heads / "
                                "num_key_value_heads must be whole)")
        if self.num_experts and not 0 < self.experts_per_token <= self.num_experts:
            raise WorkloadError(f"{self.name}: experts_per_token {self.experts_per_token} must be in "
                                f"1..num_experts ({self.num_experts})")
        if self.family == "t5" and self.num_decoder_layers < 1:
            raise WorkloadError(f"{self.name}: a t5 (encoder-decoder) needs num_decoder_layers >= 1, got "
                                f"{self.num_decoder_layers}", "num_decoder_layers defaults to num_layers")

    @property
    def kind(self) -> str:
        """``decoder``, ``encoder`` or ``encoder-decoder``."""
        return "encoder" if self.family == "bert" else "encoder-decoder" if self.family == "t5" else "decoder"

    @property
    def q_dim(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    # -- parameters ---------------------------------------------------------------------------
    def linear_shapes(self) -> dict[str, tuple[int, int, bool]]:
        """(in, out, bias) of each linear of one block (one expert for MoE), keyed by LoRA target name."""
        h, i = self.hidden_size, self.intermediate_size
        shapes = {"q": (h, self.q_dim, self.qkv_bias), "k": (h, self.kv_dim, self.qkv_bias),
                  "v": (h, self.kv_dim, self.qkv_bias), "o": (self.q_dim, h, self.out_bias),
                  "up": (h, i, self.mlp_bias), "down": (i, h, self.mlp_bias)}
        if self.gated_mlp:
            shapes["gate"] = (h, i, self.mlp_bias)
        return shapes

    def _norm(self) -> int:
        return 2 * self.hidden_size if self.norm_bias else self.hidden_size

    def _attn_params(self) -> int:
        s = self.linear_shapes()
        return sum(a * b + (b if bias else 0) for key, (a, b, bias) in s.items() if key in ("q", "k", "v", "o"))

    def _mlp_params(self) -> int:
        s = self.linear_shapes()
        return sum(a * b + (b if bias else 0) for key, (a, b, bias) in s.items() if key in ("gate", "up", "down"))

    def block_params(self, decoder_block: bool = False) -> int:
        """Parameters of one block (t5 decoder blocks add cross-attention and a third norm)."""
        experts = max(self.num_experts, 1)
        n = self._attn_params() + experts * self._mlp_params()
        if self.num_experts:
            n += self.hidden_size * self.num_experts  # router (no bias)
        norms = 1 if self.parallel_block else 2
        if decoder_block:
            n += self._attn_params()
            norms += 1
        return n + norms * self._norm()

    def param_breakdown(self) -> dict[str, int]:
        """Exact parameter counts by part; sums to ``params``."""
        h, v = self.hidden_size, self.vocab_size
        parts = {"embedding": v * h + self.max_position_embeddings * h + self.type_vocab_size * h}
        if self.family == "bert":
            parts["embedding"] += self._norm()  # embedding LayerNorm
        parts["blocks"] = self.num_layers * self.block_params()
        if self.family == "t5":
            parts["blocks"] += self.num_decoder_layers * self.block_params(decoder_block=True)
            parts["relative_bias"] = 2 * self.relative_attention_num_buckets * self.num_heads
            parts["final_norm"] = 2 * self._norm()
        elif self.family != "bert":
            parts["final_norm"] = self._norm()
        if self.kind != "encoder" and not self.tie_word_embeddings:
            parts["lm_head"] = v * h + (v if self.lm_head_bias else 0)
        if self.pooler:
            parts["pooler"] = h * h + h
        if self.mlm_head:
            parts["mlm_head"] = h * h + h + self._norm() + v  # transform dense + LayerNorm; decoder bias (tied)
        return parts

    @property
    def params(self) -> int:
        return sum(self.param_breakdown().values())

    @property
    def embedding_tables(self) -> int:
        """Embedding tables each token is looked up in: the vocabulary's, learned positions' (gpt2, bert), types'."""
        return 1 + (1 if self.max_position_embeddings else 0) + (1 if self.type_vocab_size else 0)

    def lora_params(self, rank: int, targets: tuple[str, ...]) -> int:
        """Adapter parameters: rank * (in + out) per targeted linear, in every block (and expert)."""
        shapes = self.linear_shapes()
        attn = sum(rank * (shapes[t][0] + shapes[t][1]) for t in targets if t in ("q", "k", "v", "o"))
        mlp = sum(rank * (shapes[t][0] + shapes[t][1]) for t in targets if t in shapes and t in ("gate", "up", "down"))
        per_block = attn + max(self.num_experts, 1) * mlp
        blocks = self.num_layers + (self.num_decoder_layers if self.family == "t5" else 0)
        cross = self.num_decoder_layers * attn if self.family == "t5" else 0
        return blocks * per_block + cross

    def param_tensors(self) -> int:
        """Parameter tensors (weights, biases, norm scales): what an optimizer step iterates over."""
        shapes = self.linear_shapes()
        attn = sum(1 + bias for key, (_, _, bias) in shapes.items() if key in ("q", "k", "v", "o"))
        if self.family == "gpt2":  # fused c_attn (q, k, v in one weight and bias) and c_proj
            attn = 2 * (1 + self.qkv_bias)
        mlp = sum(1 + bias for key, (_, _, bias) in shapes.items() if key in ("gate", "up", "down"))
        norm = 2 if self.norm_bias else 1
        block = attn + max(self.num_experts, 1) * mlp + (1 if self.num_experts else 0)
        block += norm * (1 if self.parallel_block else 2)
        n = self.num_layers * block + self.num_decoder_layers * (block + attn + norm)
        n += self.embedding_tables
        n += norm * (2 if self.family == "t5" else 1)
        n += 0 if (self.kind == "encoder" or self.tie_word_embeddings) else 1 + self.lm_head_bias
        return n + (2 if self.pooler else 0) + (5 if self.mlm_head else 0)

    @property
    def fused_qkv(self) -> bool:
        """One q|k|v projection (GPT-2's ``c_attn``); the other families project q, k and v separately."""
        return self.family == "gpt2"

    @property
    def has_lm_head(self) -> bool:
        """Logits over the vocabulary: a decoder's (or T5's) LM head, or an encoder's masked-LM head."""
        return self.kind != "encoder" or self.mlm_head

    def quantizable_params(self) -> int:
        """Weights of the blocks' linear layers (what nf4/int8 quantization of a base model covers)."""
        shapes = self.linear_shapes()
        attn = sum(shapes[k][0] * shapes[k][1] for k in ("q", "k", "v", "o"))
        mlp = sum(a * b for key, (a, b, _) in shapes.items() if key in ("gate", "up", "down"))
        n = self.num_layers * (attn + max(self.num_experts, 1) * mlp)
        if self.family == "t5":
            n += self.num_decoder_layers * (2 * attn + mlp)
        return n

    def arch_dict(self) -> dict[str, int]:
        return {"num_layers": self.num_layers + self.num_decoder_layers, "hidden_size": self.hidden_size,
                "num_heads": self.num_heads, "num_kv_heads": self.num_kv_heads, "head_dim": self.head_dim,
                "vocab_size": self.vocab_size, "intermediate_size": self.intermediate_size,
                "num_experts": self.num_experts, "experts_per_token": self.experts_per_token,
                **({"expert_params": self.num_layers * self.num_experts * self._mlp_params()} if self.num_experts
                   else {})}


def analytic_params(arch: TransformerArch) -> int:
    """Exact parameter count (helper for tests and the catalog of presets)."""
    return arch.params


def lora_targets(arch: TransformerArch, name: str, rank: int | None,
                 given: tuple[str, ...] | list[str] | str | None, assumptions: list[str], *,
                 default: tuple[str, ...] = ("q", "k", "v", "o"),
                 default_words: str = "q, k, v, o projections of every block") -> tuple[str, ...]:
    """The linears LoRA adapts (none without ``rank``).

    ``given``: names of ``arch.linear_shapes()``, or ``all`` / ``all-linear`` (every linear, in ``LORA_TARGETS``
    order); ``None``: the model family's ``default`` (a decoder's attention projections; T5 passes PEFT's q and v),
    said in ``assumptions`` with ``default_words``.

    Raises:
        WorkloadError: a name that is not one of the block's linears.
    """
    if rank is None:
        return ()
    shapes = arch.linear_shapes()
    if given is None:
        assumptions.append(f"LoRA targets not given: {default_words}")
        return default
    if given in ("all", "all-linear"):
        return tuple(t for t in LORA_TARGETS if t in shapes)
    targets = (given,) if isinstance(given, str) else tuple(given)
    bad = [t for t in targets if t not in shapes]
    if bad:
        raise WorkloadError(f"unknown LoRA target(s) {bad} for {name}",
                            f"accepted: {', '.join(shapes)} or 'all-linear'")
    return targets
