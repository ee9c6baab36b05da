"""Analytic transformer workloads: exact parameters, FLOPs, bytes and activations in closed form.

No torch here (and none may be imported): this path answers in milliseconds for any size.

Families: decoders ``gpt2``, ``gptj``, ``llama``, ``mistral``, ``qwen2``, ``gemma``, ``mixtral``;
encoder ``bert``; encoder-decoder ``t5``.

Conventions (also written into every workload's ``assumptions``):
- FLOPs count matrix multiplies only (the ``torch.utils.flop_counter`` / 6ND convention);
  elementwise, norm, softmax and embedding ops carry their bytes and 0 FLOPs.
- Backward of a matmul is 2x its forward FLOPs (input and weight gradients); a frozen weight
  only gets the input gradient (1x).
- Activations saved for backward are tallied tensor by tensor (Korthikanti et al. 2022); for a
  GPT-2 block with dropout at 16-bit this is exactly ``s*b*h*(34 + 5*a*s/h)`` bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from advisor.errors import WorkloadError
from advisor.precision import activation_bytes, element_bytes
from advisor.precision import optimizer_state_bytes as _state_bytes
from advisor.workload.base import MODES, OPTIMIZERS, PRECISIONS, OpCost, Workload
from advisor.workload.eager import eager_ops

DECODERS = ("gpt2", "gptj", "llama", "mistral", "qwen2", "gemma", "mixtral")
FAMILIES = (*DECODERS, "bert", "t5")
ATTENTIONS = ("eager", "sdpa", "flash")
LORA_TARGETS = ("q", "k", "v", "o", "gate", "up", "down")
DEFAULT_GEN_LEN = 128


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
    name: str = "transformer"

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise WorkloadError(f"unknown transformer family {self.family!r}", f"accepted: {', '.join(FAMILIES)}")
        for key in ("num_layers", "hidden_size", "num_heads", "num_kv_heads", "head_dim",
                    "intermediate_size", "vocab_size"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise WorkloadError(f"{self.name}: {key} must be a positive integer, got {value!r}")
        if self.num_heads % self.num_kv_heads:
            raise WorkloadError(f"{self.name}: num_heads {self.num_heads} is not a multiple of "
                                f"num_kv_heads {self.num_kv_heads}")
        if self.num_experts and not 0 < self.experts_per_token <= self.num_experts:
            raise WorkloadError(f"{self.name}: experts_per_token {self.experts_per_token} must be in "
                                f"1..num_experts ({self.num_experts})")

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
        n += 1 + (1 if self.max_position_embeddings else 0) + (1 if self.type_vocab_size else 0)
        n += norm * (2 if self.family == "t5" else 1)
        n += 0 if (self.kind == "encoder" or self.tie_word_embeddings) else 1 + self.lm_head_bias
        return n + (2 if self.pooler else 0) + (5 if self.mlm_head else 0)

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
                "num_experts": self.num_experts, "experts_per_token": self.experts_per_token}


# ---------------------------------------------------------------------------------------------
# precision helpers (shared with the traced path's assumptions)

def compute_bytes(precision: str) -> int:
    """Bytes of one activation element in matmul inputs/outputs at this precision."""
    return activation_bytes(precision)


def weight_bytes(precision: str) -> float:
    """Bytes per weight element read by a forward matmul."""
    return element_bytes(precision)


def optimizer_state_bytes(optimizer: str | None, precision: str = "fp32", hidden: int | None = None) -> float:
    """Optimizer-state bytes per trainable parameter (``advisor.precision.optimizer_state_bytes``)."""
    return _state_bytes(optimizer, precision, hidden)


_OPT_FLOPS = {"sgd": 2, "sgd-momentum": 4, "adam": 12, "adamw": 14, "adafactor": 12, "adamw-8bit": 14}
#: torch.optim's foreach implementations (the CUDA default since PyTorch 2.0): bytes read + written per fp32
#: parameter in one step, and the list-wide passes that move them, counted on torch 2.14 as it runs
#: (benchmarks/count_optimizer_bytes.py).  Each ``_foreach_*`` op is a pass over every parameter, so AdamW
#: moves 80 B/param in 9 passes where the bare update needs 28 (read p, g, m, v; write p, m, v).
OPTIMIZER_PASS_BYTES: dict[str, tuple[float, int]] = {"sgd": (12.0, 1), "sgd-momentum": (32.0, 3),
                                                      "adam": (72.0, 8), "adamw": (80.0, 9)}


def optimizer_op(trainable: int, precision: str, optimizer: str | None) -> OpCost:
    """One optimizer step over the trainable parameters: every pass of its implementation over them.

    torch.optim's foreach optimizers move ``OPTIMIZER_PASS_BYTES`` per parameter (states in the parameters'
    dtype: fp32 master weights under amp, 16-bit for pure fp16/bf16 training); Adafactor and 8-bit Adam
    (other libraries) are costed by their bare update: read grad, read/write param and states.
    """
    master = 2 if precision in ("fp16", "bf16") else 4  # amp keeps fp32 master weights and grads
    passes = 1
    if optimizer in OPTIMIZER_PASS_BYTES:
        per_fp32, passes = OPTIMIZER_PASS_BYTES[optimizer]
        per_param = per_fp32 * master / 4
    else:
        per_param = 2 * master + master + 2 * optimizer_state_bytes(optimizer, precision)
    return OpCost(name=f"optimizer.{optimizer}", kind="optimizer", phase="optimizer",
                  flops=float(_OPT_FLOPS.get(optimizer or "sgd", 2) * trainable),
                  bytes=float(per_param * trainable), count=passes)


def check_common(batch_size: Any, mode: str, precision: str, optimizer: str | None, grad_accum: Any) -> None:
    """Reject bad sizes and unknown choices with the accepted values named."""
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
        raise WorkloadError(f"batch_size must be a positive integer, got {batch_size!r}")
    if mode not in MODES:
        raise WorkloadError(f"unknown mode {mode!r}", f"accepted: {', '.join(MODES)}")
    if precision not in PRECISIONS:
        raise WorkloadError(f"unknown precision {precision!r}", f"accepted: {', '.join(PRECISIONS)}")
    if optimizer is not None and optimizer not in OPTIMIZERS:
        raise WorkloadError(f"unknown optimizer {optimizer!r}", f"accepted: {', '.join(OPTIMIZERS)}")
    if mode == "train" and precision in ("fp8", "int8", "int4"):
        raise WorkloadError(f"precision {precision!r} is for inference and quantized fine-tuning only",
                            "train with fp32, tf32, fp16, bf16, amp-fp16 or amp-bf16 (or use "
                            "lora_rank with quantize_base='nf4' for QLoRA)")
    if not isinstance(grad_accum, int) or isinstance(grad_accum, bool) or grad_accum <= 0:
        raise WorkloadError(f"grad_accum must be a positive integer, got {grad_accum!r}")


def _positive(name: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise WorkloadError(f"{name} must be a positive integer, got {value!r}")
    return value


# ---------------------------------------------------------------------------------------------
# the analytic builder

class _Ops:
    """Accumulates OpCost groups: forward ops and their backward counterparts."""

    def __init__(self) -> None:
        self.fwd: list[OpCost] = []
        self.bwd: list[OpCost] = []

    def add(self, name: str, kind: str, flops: float, nbytes: float, count: int, *, tc: bool = False,
            min_dim: int | None = None, bwd_flops: float | None = None, bwd_bytes: float | None = None,
            train: bool = True, phase: str = "forward", launches: int = 1,
            gemm: tuple[int, int, int] | None = None) -> None:
        """Add a group: ``flops``/``bytes`` are per repetition; ``count`` repetitions (layers).

        ``gemm``: (M, N, K) of the forward GEMM Y[M,N] = X[M,K] W[K,N]; its backward runs dX = dY W^T
        (M, K, N) and, when the weight trains (backward FLOPs twice the forward), dW = X^T dY (K, N, M).
        """
        fwd_gemms = bwd_gemms = None
        if gemm is not None:
            m, n, k = gemm
            fwd_gemms = (gemm,)
            if bwd_flops is not None and flops:
                ratio = bwd_flops / flops
                bwd_gemms = ((m, k, n), (k, n, m)) if ratio > 1.5 else ((m, k, n),) if ratio > 0.5 else None
        self.fwd.append(OpCost(name, kind, phase, float(flops) * count, float(nbytes) * count,  # type: ignore[arg-type]
                               count * launches, tc, min_dim, gemms=fwd_gemms))
        if train and bwd_flops is not None:
            bb = bwd_bytes if bwd_bytes is not None else 2 * nbytes
            self.bwd.append(OpCost(name + ".grad", kind, "backward", float(bwd_flops) * count,  # type: ignore[arg-type]
                                   float(bb) * count, count * launches * 2, tc, min_dim, gemms=bwd_gemms))


def build_transformer(
    arch: TransformerArch,
    *,
    name: str,
    source: str = "preset",
    batch_size: int = 1,
    seq_len: int | None = None,
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
    default_seq_len: int = 2048,
) -> Workload:
    """One step of ``arch`` as a ``Workload``, in closed form (see the module docstring).

    Raises:
        WorkloadError: a non-positive size, an unknown choice, or an option that does not apply.
    """
    check_common(batch_size, mode, precision, optimizer, grad_accum)
    if attention not in ATTENTIONS:
        raise WorkloadError(f"unknown attention implementation {attention!r}", f"accepted: {', '.join(ATTENTIONS)}")
    assumptions: list[str] = [
        "FLOPs count matrix multiplies (incl. attention QK^T and AV) only, as torch.utils.flop_counter does; "
        "elementwise, norm, softmax and embedding ops are costed by bytes moved",
    ]
    if seq_len is None:
        seq_len = min(default_seq_len, arch.max_position_embeddings or default_seq_len)
        assumptions.append(f"seq_len not given: using {seq_len}")
    s = _positive("seq_len", seq_len)
    if arch.max_position_embeddings and s > arch.max_position_embeddings:
        raise WorkloadError(f"seq_len {s} exceeds {name}'s learned position table ({arch.max_position_embeddings})",
                            f"use seq_len <= {arch.max_position_embeddings}")
    b = batch_size
    train = mode == "train"
    causal_lm = arch.kind == "decoder"
    if gen_len is not None:
        if isinstance(gen_len, bool) or not isinstance(gen_len, int) or gen_len < 0:
            raise WorkloadError(f"gen_len must be a whole number >= 0, got {gen_len!r}",
                                "0: one forward over the whole sequence (scoring, eval, embeddings); "
                                "N > 0: a prefill, then N generated tokens")
        if not (causal_lm and not train):
            raise WorkloadError("gen_len applies to infer of decoder (causal LM) models only",
                                f"{name} is a {arch.kind} in {mode} mode")
    if causal_lm and not train and gen_len is None:
        gen_len = DEFAULT_GEN_LEN
        assumptions.append(f"gen_len not given: generating {DEFAULT_GEN_LEN} tokens after the prefill")
    if quantize_base not in (None, "nf4", "int8"):
        raise WorkloadError(f"unknown quantize_base {quantize_base!r}", "accepted: nf4, int8")
    if quantize_base and lora_rank is None and train:
        raise WorkloadError("quantize_base needs lora_rank for training (a quantized base is frozen)",
                            "pass lora_rank (QLoRA), or use mode='infer'")
    targets: tuple[str, ...] = ()
    if lora_rank is not None:
        _positive("lora_rank", lora_rank)
        if lora_targets is None:
            targets = ("q", "k", "v", "o")
            assumptions.append("LoRA targets not given: q, k, v, o projections of every block")
        elif lora_targets in ("all", "all-linear"):
            targets = tuple(t for t in LORA_TARGETS if t in arch.linear_shapes())
        else:
            targets = (lora_targets,) if isinstance(lora_targets, str) else tuple(lora_targets)
            bad = [t for t in targets if t not in arch.linear_shapes()]
            if bad:
                raise WorkloadError(f"unknown LoRA target(s) {bad} for {name}",
                                    f"accepted: {', '.join(arch.linear_shapes())} or 'all-linear'")
    params_base = arch.params
    lora_p = arch.lora_params(lora_rank, targets) if lora_rank else 0
    params = params_base + lora_p
    if not train:
        trainable = 0
        optimizer_used = None
    else:
        trainable = lora_p if lora_rank else params_base
        optimizer_used = optimizer
    frozen_base = bool(lora_rank)

    a_b = compute_bytes(precision)
    amp = precision.startswith("amp-")
    # amp: residual stream and norm inputs stay fp32 (fp32 params, layer_norm autocasts to fp32),
    # matmul inputs are saved as 16-bit copies, softmax of eager scores runs in fp32.
    res_b = 4 if amp else a_b
    softmax_b = 4 if amp else a_b
    w_b = weight_bytes(precision)
    head_w_b = w_b  # embeddings, LM head and pooler are never quantized (bitsandbytes / PEFT default)
    if quantize_base == "nf4":
        w_b = 0.5 + 0.5 / 64 * 4 / 4  # 4-bit + one fp32 absmax per 64 weights (double-quantised ~0.127 bit)
        assumptions.append(f"nf4 base: 4-bit weights + quantization constants (~0.127 bit/weight with double "
                           f"quantization, block 64); bitsandbytes dequantizes each to a 16-bit copy before its "
                           f"matmul (op '.dequant': reads {w_b:.3f} B + writes 2 B per weight, memory-bound, one "
                           f"kernel per linear), in the forward and again in the backward for the input gradient "
                           f"(and in the recompute when checkpointing); the matmul reads the 2-byte copy")
    elif quantize_base == "int8":
        w_b = 1.0
    if amp:
        assumptions.append("amp: fp32 master weights, matmuls read 16-bit weight copies; residual stream and "
                           "norm inputs saved in fp32, matmul inputs saved as 16-bit, eager softmax output fp32")

    h, heads, kvh, d = arch.hidden_size, arch.num_heads, arch.num_kv_heads, arch.head_dim
    inter = arch.intermediate_size
    v_size = arch.vocab_size
    flash = attention in ("sdpa", "flash")
    ops = _Ops()
    shapes = arch.linear_shapes()

    def linear_group(label: str, tokens: int, keys: tuple[str, ...], count: int, lora: bool = True,
                     multiplier: int = 1) -> None:
        fin = shapes[keys[0]][0]
        fout = sum(shapes[k][1] for k in keys)
        fl = 2.0 * tokens * fin * fout
        nb = (tokens * fin + tokens * fout) * a_b + fin * fout * w_b * multiplier
        if quantize_base == "nf4":  # QLoRA: dequantize to a 16-bit copy (its own kernel), then a 16-bit matmul
            weights = fin * fout * multiplier
            nb = (tokens * fin + tokens * fout) * a_b + weights * 2.0
            dq = weights * (w_b + 2.0)
            ops.add(label + ".dequant", "elementwise", weights, dq, count, bwd_flops=weights, bwd_bytes=dq,
                    train=train, launches=len(keys))
        # input grad always (unless the very input needs none); weight grad only when trainable
        bwd = fl * (1 if frozen_base else 2)
        ops.add(label, "matmul", fl, nb, count, tc=True, min_dim=min(tokens, fin, fout), bwd_flops=bwd, train=train,
                gemm=(tokens, fout, fin) if multiplier == 1 else None)
        if lora and lora_rank:
            hit = [k for k in keys if k in targets]
            if hit:
                r = lora_rank
                lfl = sum(2.0 * tokens * r * (shapes[k][0] + shapes[k][1]) for k in hit) * multiplier
                lnb = sum((tokens * (shapes[k][0] + 2 * r + shapes[k][1])) * a_b for k in hit) * multiplier
                ops.add(label + ".lora", "matmul", lfl, lnb, count, tc=True, min_dim=r,
                        bwd_flops=2 * lfl, train=train, launches=2 * len(hit))

    def attention_core(label: str, q_len: int, k_len: int, count: int, causal: bool) -> None:
        qk = 2.0 * b * heads * q_len * k_len * d
        frac = 0.5 if (causal and flash) else 1.0
        fl = 2 * qk * frac
        if flash:
            nb = b * (2 * q_len * heads * d + 2 * k_len * kvh * d) * a_b
            ops.add(label, "attention", fl, nb, count, tc=True, min_dim=min(q_len, d),
                    bwd_flops=2.5 * fl, bwd_bytes=2.5 * nb, train=train)
        else:
            scores = b * heads * q_len * k_len
            ops.add(label + ".qk", "matmul", qk, (b * q_len * heads * d + b * k_len * kvh * d + scores) * a_b,
                    count, tc=True, min_dim=min(q_len, d), bwd_flops=2 * qk, train=train)
            ops.add(label + ".softmax", "elementwise", 0, scores * (a_b + softmax_b) * (2 if arch.dropout else 1),
                    count, bwd_flops=0, train=train)
            ops.add(label + ".av", "matmul", qk, (scores + b * k_len * kvh * d + b * q_len * heads * d) * a_b,
                    count, tc=True, min_dim=min(q_len, d), bwd_flops=2 * qk, train=train)

    def block(prefix: str, tokens: int, q_len: int, count: int, causal: bool, cross_len: int = 0) -> None:
        nrm = 1 if arch.parallel_block else 2
        ops.add(f"{prefix}.norm", "norm", 0, tokens * h * (res_b + a_b) * (nrm + (1 if cross_len else 0)),
                count, bwd_flops=0, train=train)
        linear_group(f"{prefix}.attn.qkv", tokens, ("q", "k", "v"), count)
        attention_core(f"{prefix}.attn.core", q_len, q_len, count, causal)
        linear_group(f"{prefix}.attn.out", tokens, ("o",), count)
        if cross_len:
            linear_group(f"{prefix}.cross.q", tokens, ("q",), count)
            linear_group(f"{prefix}.cross.kv", b * cross_len, ("k", "v"), count)
            attention_core(f"{prefix}.cross.core", q_len, cross_len, count, False)
            linear_group(f"{prefix}.cross.out", tokens, ("o",), count)
        if arch.num_experts:
            e, k = arch.num_experts, arch.experts_per_token
            ops.add(f"{prefix}.moe.router", "matmul", 2.0 * tokens * h * e, (tokens * (h + e)) * a_b + h * e * w_b,
                    count, tc=True, min_dim=min(tokens, e), bwd_flops=4.0 * tokens * h * e, train=train)
            routed = tokens * k
            # each expert's weights are read once; the routed tokens split between experts
            mkeys = ("gate", "up") if arch.gated_mlp else ("up",)
            linear_group(f"{prefix}.moe.experts.in", routed, mkeys, count, multiplier=e)
            mult_tokens = routed
        else:
            mkeys = ("gate", "up") if arch.gated_mlp else ("up",)
            linear_group(f"{prefix}.mlp.in", tokens, mkeys, count)
            mult_tokens = tokens
        act_elems = mult_tokens * inter * (2 if arch.gated_mlp else 1)
        ops.add(f"{prefix}.mlp.act", "elementwise", 0, act_elems * a_b + mult_tokens * inter * a_b, count,
                bwd_flops=0, train=train)
        if arch.num_experts:
            linear_group(f"{prefix}.moe.experts.down", mult_tokens, ("down",), count, multiplier=arch.num_experts)
        else:
            linear_group(f"{prefix}.mlp.down", tokens, ("down",), count)
        ops.add(f"{prefix}.residual", "elementwise", 0, tokens * h * 3 * res_b * 2, count, bwd_flops=0, train=train)

    tokens = b * s
    # prefill of a causal LM only needs the logits of the last position to start generating
    # logits at every position: training, an MLM head, a plain forward (gen_len=0), and the prefill of
    # generation too -- a model's forward over the prompt (the validate zoo's generate(), Hugging Face's
    # before logits_to_keep) computes them all, then samples from the last one
    head_tokens = tokens
    ops.add("embedding", "embedding", 0, tokens * h * (res_b + head_w_b), 1, bwd_flops=0, train=train)
    if arch.family == "t5":
        block("encoder.layers.*", tokens, s, arch.num_layers, causal=False)
        block("decoder.layers.*", tokens, s, arch.num_decoder_layers, causal=True, cross_len=s)
        assumptions.append("t5: decoder target length = seq_len")
    else:
        block("layers.*", tokens, s, arch.num_layers, causal=causal_lm)
    if arch.mlm_head:
        # BertForMaskedLM's transform: dense h x h (+ GELU, LayerNorm) before the tied decoder
        fl = 2.0 * tokens * h * h
        ops.add("mlm_head.transform", "matmul", fl, 2 * tokens * h * a_b + h * h * w_b, 1, tc=True,
                min_dim=min(tokens, h), bwd_flops=2 * fl, train=train, gemm=(tokens, h, h))
        ops.add("mlm_head.gelu_norm", "elementwise", 0, tokens * h * (2 * a_b + 2 * res_b), 1, bwd_flops=0,
                train=train)
        assumptions.append("encoder with a masked-LM head (BertForMaskedLM): dense + LayerNorm, then logits over "
                           "the vocabulary at every position (the loss over all of them)")
    if arch.has_lm_head:
        fl = 2.0 * head_tokens * h * v_size
        logits_b = 4 if amp else a_b
        ops.add("lm_head", "matmul", fl, head_tokens * (h + v_size) * a_b + h * v_size * head_w_b, 1, tc=True,
                min_dim=min(head_tokens, h), bwd_flops=fl * (1 if frozen_base else 2), train=train,
                gemm=(head_tokens, v_size, h))
        if train:
            ops.add("loss.cross_entropy", "reduction", 0, tokens * v_size * (a_b + 2 * logits_b), 1,
                    bwd_flops=0, bwd_bytes=tokens * v_size * 2 * logits_b, train=train)
    elif arch.pooler:
        if train:
            assumptions.append("encoder: the bare model (BertModel, with pooler) and no task head; an MLM head "
                               "(config architectures: BertForMaskedLM) adds a dense h x h and logits over the "
                               "vocabulary at every position")
        fl = 2.0 * b * h * h
        ops.add("pooler", "matmul", fl, (2 * b * h) * a_b + h * h * head_w_b, 1, tc=True, min_dim=min(b, h),
                bwd_flops=2 * fl, train=train, gemm=(b, h, h))
    if train and gradient_checkpointing:
        # checkpointed blocks run their forward again during backward
        recompute = [replace(op, name="recompute." + op.name, phase="backward") for op in ops.fwd
                     if op.name.startswith(("layers.", "encoder.", "decoder."))]
    else:
        recompute = []
    all_ops: list[OpCost] = list(ops.fwd)
    if train:
        all_ops += ops.bwd + recompute
        if trainable and optimizer_used:
            all_ops.append(optimizer_op(trainable, precision, optimizer_used))
    if not train and causal_lm and gen_len:
        all_ops = [replace(op, phase="prefill") for op in all_ops]

    # -- activations ----------------------------------------------------------------------------
    if train:
        act, largest_tmp = activation_bytes_breakdown(arch, b, s, precision=precision, attention=attention,
                                                      gradient_checkpointing=gradient_checkpointing,
                                                      lora_rank=lora_rank or 0, lora_targets=targets)
    else:
        act, largest_tmp = 0.0, _largest_temp(arch, b, s, a_b, softmax_b, flash)
    transient = largest_tmp
    if arch.has_lm_head:
        if train:
            # the loss's backward: the gradients of the log-probabilities and of the logits live at once
            # (beside the saved log-probabilities, in activations), in the loss's dtype (fp32 under amp);
            # the forward's 16-bit logits and their fp32 copy are no more.  Not at the same time as a
            # block's temporaries.
            logits_b = 4 if amp else a_b
            transient = max(largest_tmp, tokens * v_size * 2.0 * logits_b)
        else:
            # the logits of every position (in the compute dtype) beside the largest block temporary
            transient += head_tokens * v_size * a_b
    if train:
        assumptions.append(
            "activations: every tensor autograd saves, tallied per block (Korthikanti et al. 2022: "
            "s*b*h*(34 + 5*a*s/h) bytes for a GPT-2 block with dropout at 16-bit)"
            + (", with flash/SDPA attention the s x s scores are not kept (only logsumexp, fp32)" if flash else "")
            + ("; gradient checkpointing keeps each block's input plus one block's full activations"
               if gradient_checkpointing else ""))
        assumptions.append("transient: the larger of the loss's backward (gradients of the log-probabilities and "
                           "logits, in the loss's dtype: fp32 under amp) and the largest per-block temporary"
                           + ("; checkpointing keeps the head's saved tensors or one recomputed block's "
                              "activations, whichever is larger (they are not live at once)"
                              if gradient_checkpointing else ""))
        if frozen_base:
            assumptions.append("LoRA: base weights frozen (input gradients only, 1x forward FLOPs in backward); "
                               "adapters trained")
    if causal_lm or arch.family == "t5":
        if flash:
            assumptions.append(f"attention={attention}: causal masking skips half of QK^T/AV FLOPs; backward "
                               "recomputes the scores (2.5x forward)")
        else:
            assumptions.append("attention=eager: the full s x s QK^T and AV are computed and counted, masked or not")
    if arch.num_experts:
        assumptions.append(f"MoE: {arch.experts_per_token} of {arch.num_experts} experts' FLOPs per token; "
                           "all experts' weights held and read")
    if not train and arch.has_lm_head:
        if gen_len:
            assumptions.append(f"infer: generation (gen_len={gen_len}); ops are the prefill, a forward over the "
                               "prompt with logits at every position (as a model's forward computes them; "
                               "Hugging Face's logits_to_keep=1 would skip all but the last); decode_ops are one "
                               "generated token at the mean context, reading every weight once (memory bound)")
        else:
            assumptions.append("infer: one forward over the whole sequence with logits at every position "
                               "(scoring, evaluation, embeddings, reward models: gen_len=0); no generation, "
                               "no KV cache")

    kv_cache = 0.0
    decode: tuple[OpCost, ...] = ()
    if not train and causal_lm and gen_len:
        kv_cache = kv_cache_peak_bytes(arch, b, s, gen_len, a_b)
        ctx = s + gen_len / 2
        decode = _decode_ops(arch, b, ctx, a_b, w_b)
        assumptions.append(
            "KV cache at its peak: the larger of the prefill's cache (the keys and values are views of the "
            "projection's output, so a fused q/k/v projection such as GPT-2's c_attn keeps q alive too) and "
            f"2 x layers x kv_heads x head_dim x (seq_len + gen_len) x batch x {a_b} bytes, plus one layer's "
            "second copy while torch.cat grows it (eager, Hugging Face DynamicCache: each token re-copies the "
            "cache; graph runtimes -- vLLM, TensorRT-LLM, static caches -- do not); the prefill's logits live "
            "until the first generated token's forward ends")
    if quantize_base:
        assumptions.append(f"{quantize_base} base: only the blocks' linear weights are quantized "
                           "(options['quantized_params']); embeddings, LM head, norms and biases stay 16-bit "
                           "(bitsandbytes / PEFT default)")
    options: dict[str, Any] = {
        "quantized_params": arch.quantizable_params() if quantize_base else 0,
        "gradient_checkpointing": bool(gradient_checkpointing), "lora_rank": lora_rank,
        "lora_targets": list(targets) if lora_rank else None, "quantize_base": quantize_base,
        "grad_accum": grad_accum, "attention": attention, "frozen": frozen_base,
    }
    kwargs = dict(name=name, source=source, seq_len=s, mode=mode, precision=precision, optimizer=optimizer,
                  gradient_checkpointing=gradient_checkpointing, lora_rank=lora_rank,
                  lora_targets=lora_targets, quantize_base=quantize_base, grad_accum=grad_accum,
                  gen_len=gen_len if (causal_lm and not train) else None, attention=attention)

    def rebuild(new_batch: int) -> Workload:
        return build_transformer(arch, batch_size=new_batch, **kwargs)  # type: ignore[arg-type]

    options["rebuild"] = rebuild
    blocks_total = arch.num_layers + arch.num_decoder_layers
    eager = eager_ops(
        family=arch.family, layers=arch.num_layers, decoder_layers=arch.num_decoder_layers, attention=attention,
        amp=amp, train=train, causal_lm=causal_lm, lora_targets=len(targets) if lora_rank else 0,
        experts=arch.num_experts, gradient_checkpointing=gradient_checkpointing and train,
        trainable_tensors=(2 * len(targets) * blocks_total if lora_rank else arch.param_tensors()) if train else 0,
        optimizer=optimizer_used)
    return Workload(
        name=name, source=source, family=arch.kind, mode=mode, batch_size=b,  # type: ignore[arg-type]
        precision=precision, optimizer=optimizer_used, params=params, trainable_params=trainable,
        activation_bytes=float(act), transient_bytes=float(transient), ops=tuple(all_ops), seq_len=s,
        lora_params=lora_p, kv_cache_bytes=kv_cache, decode_ops=decode,
        gen_len=gen_len if (causal_lm and not train) else None, tokens_per_sample=s,
        input_bytes_per_sample=float(s * 8 * (2 if train else 1)),
        arch=arch.arch_dict(), eager_ops=eager, assumptions=tuple(assumptions), options=options,
    )


def kv_cache_peak_bytes(arch: TransformerArch, b: int, s: int, gen_len: int, a_b: int) -> float:
    """Peak bytes the KV cache holds while ``b`` sequences of ``s`` prompt tokens generate ``gen_len`` more.

    After the prefill each layer's cache holds views of its projection's output: with a fused q/k/v
    projection (GPT-2's ``c_attn``) the whole q|k|v tensor stays alive until the first ``torch.cat``
    replaces it.  At the end the cache is ``2 x kv_dim`` per position for ``s + gen_len`` positions.  While
    ``torch.cat`` grows a layer's keys (or values) the old and the new tensor live at once: one more
    layer's keys for ``s + gen_len`` positions.
    """
    per_pos = arch.q_dim + 2 * arch.kv_dim if arch.family == "gpt2" else 2 * arch.kv_dim
    prefill = arch.num_layers * b * s * per_pos * a_b
    final = arch.num_layers * b * (s + gen_len) * 2 * arch.kv_dim * a_b
    return float(max(prefill, final) + b * (s + gen_len) * arch.kv_dim * a_b)


def _largest_temp(arch: TransformerArch, b: int, s: int, a_b: int, softmax_b: int, flash: bool) -> float:
    mlp = b * s * arch.intermediate_size * a_b * (2 if arch.gated_mlp else 1)
    scores = 0 if flash else b * arch.num_heads * s * s * (a_b + softmax_b)
    return float(max(mlp, scores))


def activation_bytes_breakdown(arch: TransformerArch, b: int, s: int, *, precision: str, attention: str,
                               gradient_checkpointing: bool = False, lora_rank: int = 0,
                               lora_targets: tuple[str, ...] = ()) -> tuple[float, float]:
    """(bytes saved for backward at the peak, largest per-block temporary) for one micro-batch.

    Per block, tensor by tensor (elements of s*b*h unless said):
    norm inputs (residual dtype), norm outputs saved by the next matmul, q, k, v, attention
    output, MLP input/activation tensors, dropout masks (1 byte) when the family uses dropout,
    and either the s x s softmax output (eager) or the logsumexp stats (flash/SDPA).
    """
    flash = attention in ("sdpa", "flash")
    a_b = compute_bytes(precision)
    amp = precision.startswith("amp-")
    res_b = 4 if amp else a_b
    softmax_b = 4 if amp else a_b
    h, heads = arch.hidden_size, arch.num_heads
    inter = arch.intermediate_size
    sbh = s * b * h
    mask = 1 if arch.dropout else 0

    rms = not arch.norm_bias  # RMSNorm / T5 norm as HF writes it (unfused)
    fused_qkv = arch.family == "gpt2"  # one c_attn; the others project q, k, v separately

    def norm_bytes(tokens: int, consumers: int) -> float:
        """A norm's saved tensors: its input, the normalized tensor (unfused RMSNorm), and its output as
        saved by the matmuls reading it (under amp each linear saves its own 16-bit cast of it)."""
        n = tokens * h * res_b
        if rms:
            n += tokens * h * (4 if amp else a_b)
        return n + tokens * h * a_b * (consumers if amp else 1)

    def attn_bytes(q_len: int, k_len: int, with_norm: bool) -> float:
        t_q, t_k = b * q_len, b * k_len
        n = 0.0
        if with_norm:
            n += norm_bytes(t_q, 1 if fused_qkv else 3)
        n += (t_q * arch.q_dim + 2 * t_k * arch.kv_dim) * a_b  # q, k, v
        if flash:
            # kernel output (laid out so the out-projection reads it as a view) + logsumexp (fp32);
            # flash dropout regenerates its mask from the RNG state
            n += t_q * arch.q_dim * a_b + b * heads * q_len * 4
        else:
            sc = b * heads * q_len * k_len
            n += sc * softmax_b
            if amp:
                n += sc * a_b  # 16-bit copy of the probabilities saved by the AV matmul
            if arch.dropout:
                n += sc * (1 + a_b)  # dropout mask + dropped probabilities
            n += t_q * arch.q_dim * a_b  # out-projection input (a copy of the transposed AV output)
        n += t_q * h * mask  # residual dropout mask
        return n

    def mlp_bytes(tokens: int, with_norm: bool) -> float:
        n = 0.0
        if with_norm:
            n += norm_bytes(tokens, 2 if arch.gated_mlp else 1)
        routed = tokens * (arch.experts_per_token or 1)
        if arch.gated_mlp:
            n += routed * inter * 4 * a_b  # gate out (act input), act out, up out, product (down input)
        else:
            n += routed * inter * 2 * a_b  # fc1 out (act input), act out (fc2 input)
        if arch.num_experts:
            n += tokens * arch.num_experts * 4 + routed * h * a_b  # router logits, gathered expert inputs
        n += tokens * h * mask
        return n

    def lora_bytes(tokens: int) -> float:
        return float(tokens * lora_rank * a_b * len(lora_targets)) if lora_rank else 0.0

    tokens = b * s
    if arch.parallel_block:
        layer = norm_bytes(tokens, 4) + attn_bytes(s, s, False) + mlp_bytes(tokens, False)
    else:
        layer = attn_bytes(s, s, True) + mlp_bytes(tokens, True)
    layer += lora_bytes(tokens)
    n_layers = arch.num_layers
    # the loss runs in the logits' dtype (fp32 under amp: autocast runs cross_entropy in fp32); its
    # log_softmax output is kept until the loss's backward
    head_saved = tokens * arch.vocab_size * float(4 if amp else a_b) if arch.has_lm_head else 0.0
    total: float
    if arch.family == "t5":
        dec_layer = layer + attn_bytes(s, s, True)
        if gradient_checkpointing:
            total = (arch.num_layers + arch.num_decoder_layers) * sbh * res_b + max(dec_layer, head_saved)
        else:
            total = arch.num_layers * layer + arch.num_decoder_layers * dec_layer + head_saved
    elif gradient_checkpointing:
        # each block's input, plus whichever is larger: the head's saved tensors (through the loss's
        # backward) or one block's full activations while it is recomputed (after the head's are freed)
        total = n_layers * sbh * res_b + max(layer, head_saved)
    else:
        total = n_layers * layer + head_saved
    if arch.mlm_head:
        # transform: dense input, GELU input, LayerNorm input (fp32 under amp), decoder input
        total += tokens * h * (3 * a_b + res_b)
    elif arch.kind != "encoder":
        total += norm_bytes(tokens, 1)  # final norm (its output is the lm head input)
    largest = _largest_temp(arch, b, s, a_b, softmax_b, flash)
    return float(total), largest


def _decode_ops(arch: TransformerArch, b: int, ctx: float, a_b: int, w_b: float) -> tuple[OpCost, ...]:
    """One generated token at context ``ctx``: every weight read once, KV cache read, tiny matmuls."""
    h = arch.hidden_size
    shapes = arch.linear_shapes()
    experts_read = max(arch.num_experts, 1)
    active = arch.experts_per_token or 1
    attn_w = sum(shapes[k][0] * shapes[k][1] for k in ("q", "k", "v", "o"))
    mlp_w = sum(shapes[k][0] * shapes[k][1] for k in ("gate", "up", "down") if k in shapes)
    L = arch.num_layers
    out = [
        OpCost("decode.layers.*.attn.proj", "matmul", "decode", 2.0 * b * attn_w * L,
               attn_w * w_b * L + b * 6 * h * a_b * L, 4 * L, True, b),
        OpCost("decode.layers.*.attn.core", "attention", "decode", 4.0 * b * arch.num_heads * ctx * arch.head_dim * L,
               2.0 * b * arch.num_kv_heads * arch.head_dim * ctx * a_b * L, L, True, 1),
        OpCost("decode.layers.*.mlp", "matmul", "decode", 2.0 * b * mlp_w * active * L,
               mlp_w * w_b * min(experts_read, max(b * active, 1)) * L, (3 if arch.gated_mlp else 2) * L, True, b),
        OpCost("decode.lm_head", "matmul", "decode", 2.0 * b * h * arch.vocab_size, h * arch.vocab_size * w_b,
               1, True, b),
        OpCost("decode.elementwise", "elementwise", "decode", 0.0, b * h * a_b * 12 * L, 6 * L),
        # transformers' DynamicCache (and the legacy tuple cache) grows k and v by torch.cat each token:
        # the whole cache is read and written again (cache_utils.DynamicCache.update)
        OpCost("decode.kv_cache.cat", "elementwise", "decode", 0.0,
               2.0 * 2.0 * b * arch.num_kv_heads * arch.head_dim * ctx * a_b * L, 2 * L, runtime="eager"),
    ]
    return tuple(replace(op, flops=float(op.flops), bytes=float(op.bytes)) for op in out)


def analytic_params(arch: TransformerArch) -> int:
    """Exact parameter count (helper for tests and the catalog of presets)."""
    return arch.params


__all__ = ["FAMILIES", "TransformerArch", "activation_bytes_breakdown", "build_transformer"]
