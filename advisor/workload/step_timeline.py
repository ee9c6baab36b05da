"""The allocations and frees of one closed-form transformer step, in order, as eager PyTorch makes them.

A traced module's peak is replayed through the caching-allocator model (``advisor.estimator.allocator``) from the
storage timeline of its fake run.  The closed-form builder has no run to record, so the programmes below write its
step as the Hugging Face module runs it (transformers 5, SDPA attention), op by op, on a ``step_tape.Tape``, which
derives the frees as eager PyTorch and autograd make them.  The result is the tracer's form of a step, replayed by
the same allocator rules (one rule, not two).  Steps no programme writes (``builder_timeline`` returns ``None``) keep
the estimator's fitted allocator share.  Pure Python, no torch.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from advisor.workload.arch import TransformerArch
from advisor.workload.step_generate import generate
from advisor.workload.step_tape import Program, StepSpec, Tape, Tensor
from advisor.workload.step_timeline_moe import SparseMoe
from advisor.workload.transformer_ops import cross_entropy


class _Llama(Program):
    """Llama-style decoders (Llama, Mistral, Qwen2, Gemma): RMSNorm, rotary q and k, SDPA, a gated MLP."""

    def norm(self, x: Tensor, w: Tensor) -> Tensor:
        """RMSNorm as transformers writes it: an fp32 chain, then the weight (Gemma: ``1 + weight``, cast last)."""
        tape, sp = self.tape, self.spec
        el, t4 = sp.tokens * self.arch.hidden_size, sp.tokens * 4
        x32 = tape.one(el * 4, [x]) if sp.res_b != 4 else x
        sq = tape.one(el * 4, [x32], saved=[x32])
        var = tape.one(t4, [sq])
        tape.drop(sq)
        ve = tape.one(t4, [var])
        tape.drop(var)
        r = tape.one(t4, [ve], save_out=True)
        tape.drop(ve)
        n = tape.one(el * 4, [x32, r], saved=[x32, r])
        tape.drop(r, *(t for t in (x32,) if t is not x))
        if self.arch.family == "gemma":
            scale = tape.one(w.nbytes * 4 // sp.p_b, [w])
            out = tape.one(el * 4, [n, scale], saved=[n, scale])
            tape.drop(n, scale)
        else:
            if sp.res_b != 4:
                n16 = tape.one(el * sp.res_b, [n])
                tape.drop(n)
                n = n16
            out = tape.one(el * (4 if sp.amp else sp.a_b), [w, n], saved=[n])
            tape.drop(n)
            return out
        if sp.res_b != 4:
            out16 = tape.one(el * sp.res_b, [out])
            tape.drop(out)
            out = out16
        return out

    def rotary(self, x: Tensor, width: int, cos: Tensor, sin: Tensor) -> Tensor:
        """``x * cos + rotate_half(x) * sin`` (fp32 products under amp: cos and sin are)."""
        tape, sp = self.tape, self.spec
        el = sp.tokens * width
        a = tape.one(el * sp.res_b, [x], saved=[cos])
        neg = tape.one(el * sp.a_b // 2, [x])
        cat = tape.one(el * sp.a_b, [neg, x])
        tape.drop(neg)
        b = tape.one(el * sp.res_b, [cat], saved=[sin])
        tape.drop(cat)
        out = tape.one(el * sp.res_b, [a, b])
        tape.drop(a, b)
        return out

    def self_attention(self, h: Tensor, h_b: int, ws: dict[str, tuple[Tensor, Tensor | None]], cos: Tensor,
                       sin: Tensor) -> Tensor:
        arch, tape, sp = self.arch, self.tape, self.spec
        hd, qd, kd = arch.hidden_size, arch.q_dim, arch.kv_dim
        q = self.linear(h, h_b, ws["q"], hd, qd)
        k = self.linear(h, h_b, ws["k"], hd, kd)
        v = self.linear(h, h_b, ws["v"], hd, kd)
        qr = self.rotary(q, qd, cos, sin)
        kr = self.rotary(k, kd, cos, sin)
        tape.drop(q, k)
        kr, v = self.kv_update(kr, v, sp.res_b)
        o = self.attention(qr, kr, v, q_b=sp.res_b, k_b=sp.res_b)
        out = self.linear(o, sp.a_b, ws["o"], qd, hd)
        tape.drop(o, qr, kr, v)  # the attention's locals die when it returns
        return out

    def mlp(self, h: Tensor, h_b: int, ws: dict[str, tuple[Tensor, Tensor | None]]) -> Tensor:
        arch, tape, sp = self.arch, self.tape, self.spec
        hd, i = arch.hidden_size, arch.intermediate_size
        el = sp.tokens * i * sp.a_b
        g = self.linear(h, h_b, ws["gate"], hd, i)
        act = tape.one(el, [g], saved=[g])
        tape.drop(g)
        u = self.linear(h, h_b, ws["up"], hd, i)
        prod = tape.one(el, [act, u], saved=[act, u])
        tape.drop(act, u)
        out = self.linear(prod, sp.a_b, ws["down"], i, hd)
        tape.drop(prod)
        return out

    def mlp_weights(self) -> dict[str, tuple[Tensor, Tensor | None]]:
        shapes = self.arch.linear_shapes()
        return {k: self.weight(*shapes[k]) for k in ("gate", "up", "down")}

    def block(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        arch, tape, sp = self.arch, self.tape, self.spec
        shapes = arch.linear_shapes()
        h_b = 4 if sp.amp else sp.a_b
        ws = {k: self.weight(*shapes[k]) for k in ("q", "k", "v", "o")}
        h = self.norm(x, tape.param(arch.hidden_size * sp.p_b, True))
        a = self.self_attention(h, h_b, ws, cos, sin)
        tape.drop(h)
        x2 = tape.one(sp.tokens * arch.hidden_size * sp.res_b, [x, a])
        tape.drop(a)
        ws = self.mlp_weights()
        h = self.norm(x2, tape.param(arch.hidden_size * sp.p_b, True))
        m = self.mlp(h, h_b, ws)
        tape.drop(h)
        x3 = tape.one(sp.tokens * arch.hidden_size * sp.res_b, [x2, m])
        tape.drop(x2, m)
        return x3

    def forward(self) -> Tensor:
        """The model's forward to its logits."""
        arch, tape, sp = self.arch, self.tape, self.spec
        hd, v = arch.hidden_size, arch.vocab_size
        table = tape.param(v * hd * sp.p_b, True)
        embeds = x = tape.one(sp.tokens * hd * sp.p_b, [table])
        if arch.family == "gemma":  # hidden_states = inputs_embeds * normalizer
            x = tape.one(sp.tokens * hd * sp.res_b, [embeds])
        else:  # hidden_states = inputs_embeds: the model's forward holds both names to its end
            embeds.refs += 1
        cs_b = 4 if sp.amp else sp.a_b
        cos, sin = (tape.one(sp.s * arch.head_dim * cs_b) for _ in range(2))
        x = self.stack(self.block, x, cos, sin)
        h = self.norm(x, tape.param(hd * sp.p_b, True))
        tape.drop(x, cos, sin, embeds)
        lm_head = (table, None) if arch.tie_word_embeddings else self.weight(hd, v, False)
        logits = self.head(h, 4 if sp.amp else sp.a_b, lm_head, hd, v)
        tape.drop(h)
        return logits


class _Mixtral(SparseMoe, _Llama):
    """Mixtral: Mistral's blocks with the sparse MoE block (``advisor.workload.step_timeline_moe``) for the MLP."""


class _LayerNormed(Program):
    """GPT-2 and BERT: LayerNorm (GPT-2's fp32 residual stream under amp, BERT's 16-bit one cast up first), dropout."""

    def dropout(self, x: Tensor, x_b: int) -> Tensor:
        """``native_dropout`` in training (its 1-byte mask saved), the input dropped; nothing in inference."""
        if not (self.spec.train and self.arch.dropout):
            return x
        el = self.spec.tokens * self.arch.hidden_size
        out, mask = self.tape.op((el * x_b, el), [x], save_out=(1,))
        self.tape.drop(mask, x)
        return out

    def layer_norm(self, x: Tensor) -> Tensor:
        """``native_layer_norm`` (fp32 under amp: a 16-bit input cast up first): the output; input, mean, rstd saved."""
        tape, sp, hd = self.tape, self.spec, self.arch.hidden_size
        w, b = (tape.param(hd * sp.p_b, True) for _ in range(2))
        x32 = tape.one(sp.tokens * hd * 4, [x]) if sp.amp and x.nbytes < sp.tokens * hd * 4 else x
        out, mean, rstd = tape.op((sp.tokens * hd * sp.res_b, sp.tokens * 4, sp.tokens * 4), [x32, w, b],
                                  saved=[x32], save_out=(1, 2))
        tape.drop(mean, rstd, *(t for t in (x32,) if t is not x))
        return out


class _Gpt2(_LayerNormed):
    """GPT-2: learned positions, LayerNorm, Conv1D's addmm (a fused q|k|v), SDPA, ``gelu_new`` as Python, dropout."""

    def gelu_new(self, x: Tensor) -> Tensor:
        """``0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x**3)))``: pow in fp32 under amp (autocast's list)."""
        tape, sp = self.tape, self.spec
        el = sp.tokens * self.arch.intermediate_size
        f_b = 4 if sp.amp else sp.a_b
        half = tape.one(el * sp.a_b, [x])
        x32 = tape.one(el * 4, [x]) if sp.amp else x
        pw = tape.one(el * f_b, [x32], saved=[x32])
        tape.drop(*(t for t in (x32,) if t is not x))
        t2 = tape.one(el * f_b, [pw])
        tape.drop(pw)
        t3 = tape.one(el * f_b, [x, t2])
        tape.drop(t2)
        t4 = tape.one(el * f_b, [t3])
        tape.drop(t3)
        t5 = tape.one(el * f_b, [t4], save_out=True)
        tape.drop(t4)
        t6 = tape.one(el * f_b, [t5])
        tape.drop(t5)
        out = tape.one(el * f_b, [half, t6], saved=[half, t6])
        tape.drop(half, t6)
        return out

    def self_attention(self, h: Tensor, h_b: int) -> Tensor:
        tape, sp, hd = self.tape, self.spec, self.arch.hidden_size
        qkv = self.linear(h, h_b, self.weight(hd, 3 * hd, True), hd, 3 * hd)
        qkv.refs += 2  # q, k and v: three views of c_attn's output
        k, v = self.kv_update(qkv, qkv, sp.a_b)
        o = self.attention(qkv, k, v, q_b=sp.a_b, k_b=sp.a_b)
        c = self.linear(o, sp.a_b, self.weight(hd, hd, True), hd, hd)
        tape.drop(o)
        out = self.dropout(c, sp.a_b)
        tape.drop(qkv, k, v)  # the attention's locals die when it returns
        return out

    def block(self, x: Tensor) -> Tensor:
        arch, tape, sp = self.arch, self.tape, self.spec
        hd, i, el = arch.hidden_size, arch.intermediate_size, sp.tokens * arch.hidden_size
        h_b = 4 if sp.amp else sp.a_b
        h = self.layer_norm(x)
        a = self.self_attention(h, h_b)
        x2 = tape.one(el * sp.res_b, [a, x])
        tape.drop(h)
        h = self.layer_norm(x2)
        f = self.linear(h, h_b, self.weight(hd, i, True), hd, i)
        g = self.gelu_new(f)
        tape.drop(f)
        c = self.linear(g, 4 if sp.amp else sp.a_b, self.weight(i, hd, True), i, hd)
        tape.drop(g)
        m = self.dropout(c, sp.a_b)
        x3 = tape.one(el * sp.res_b, [x2, m])
        tape.drop(h, a, m, x2)  # the block's locals die when it returns
        return x3

    def forward(self) -> Tensor:
        """The model's forward to its logits (the tied head)."""
        arch, tape, sp = self.arch, self.tape, self.spec
        hd, v = arch.hidden_size, arch.vocab_size
        table = tape.param(v * hd * sp.p_b, True)
        positions = tape.param(arch.max_position_embeddings * hd * sp.p_b, True)
        embeds = tape.one(sp.tokens * hd * sp.p_b, [table])
        pos = tape.one(sp.s * hd * sp.p_b, [positions])
        x = self.dropout(tape.one(sp.tokens * hd * sp.p_b, [embeds, pos]), sp.p_b)
        x = self.stack(self.block, x)
        h = self.layer_norm(x)
        tape.drop(x, embeds, pos)  # GPT2Model.forward's locals die when it returns
        logits = self.head(h, 4 if sp.amp else sp.a_b, (table, None), hd, v)
        tape.drop(h)
        return logits


class _Bert(_LayerNormed):
    """BERT with a masked-LM head: post-norm LayerNorm, separate q / k / v, SDPA, GELU, dropout, a tied decoder."""

    def add_norm(self, branch: Tensor, residual: Tensor) -> tuple[Tensor, Tensor]:
        """``LayerNorm(dropout(branch) + residual)``: (its output, the dropped-out branch, which lives on)."""
        tape, sp = self.tape, self.spec
        d = self.dropout(branch, sp.a_b)
        s = tape.one(sp.tokens * self.arch.hidden_size * sp.res_b, [d, residual])
        out = self.layer_norm(s)
        tape.drop(s)
        return out, d

    def block(self, x: Tensor) -> Tensor:
        arch, tape, sp = self.arch, self.tape, self.spec
        hd, i = arch.hidden_size, arch.intermediate_size
        shapes = arch.linear_shapes()
        h_b = sp.res_b
        q, k, v = (self.linear(x, h_b, self.weight(*shapes[n]), hd, shapes[n][1]) for n in ("q", "k", "v"))
        o = self.attention(q, k, v, q_b=sp.a_b, k_b=sp.a_b)
        tape.drop(q, k, v)
        c = self.linear(o, sp.a_b, self.weight(*shapes["o"]), hd, hd)
        tape.drop(o)
        a, d = self.add_norm(c, x)
        tape.drop(d)
        f = self.linear(a, h_b, self.weight(*shapes["up"]), hd, i)
        g = tape.one(sp.tokens * i * sp.a_b, [f], saved=[f])
        tape.drop(f)
        c = self.linear(g, sp.a_b, self.weight(*shapes["down"]), i, hd)
        tape.drop(g)
        out, d = self.add_norm(c, a)
        tape.drop(d, a)
        return out

    def forward(self) -> Tensor:
        """The model's forward to its logits (BertForMaskedLM's head, its decoder tied to the word embeddings)."""
        arch, tape, sp = self.arch, self.tape, self.spec
        hd, v, el = arch.hidden_size, arch.vocab_size, sp.tokens * arch.hidden_size
        table = tape.param(v * hd * sp.p_b, True)
        types, positions = (tape.param(n * hd * sp.p_b, True)
                            for n in (arch.type_vocab_size, arch.max_position_embeddings))
        words = tape.one(el * sp.p_b, [table])
        typed = tape.one(el * sp.p_b, [types])
        e = tape.one(el * sp.p_b, [words, typed])
        pos = tape.one(sp.s * hd * sp.p_b, [positions])
        e2 = tape.one(el * sp.p_b, [e, pos])
        tape.drop(e)
        n = self.layer_norm(e2)
        tape.drop(e2)
        first = x = self.dropout(n, sp.res_b)
        tape.drop(words, typed, pos)
        for layer in range(arch.num_layers):
            y = self.layer(self.block, x)
            if layer:
                tape.drop(x)
            x = y
        tape.drop(first)
        t = self.linear(x, sp.res_b, self.weight(hd, hd, True), hd, hd)
        g = tape.one(sp.tokens * hd * sp.a_b, [t], saved=[t])
        tape.drop(t)
        h = self.layer_norm(g)
        tape.drop(g)
        logits = self.head(h, sp.res_b, (table, tape.param(v * sp.p_b, True)), hd, v)
        tape.drop(h)
        self.cache.append(x)  # sequence_output: part of the model's output, dropped with it
        return logits

    def loss(self, logits: Tensor) -> Tensor:
        """``CrossEntropyLoss`` on the logits as they are: log_softmax in their dtype, nll_loss (fp32 under amp)."""
        tape, sp = self.tape, self.spec
        el = sp.tokens * self.arch.vocab_size
        ce = cross_entropy(False, sp.amp, sp.a_b)
        ls = tape.one(el * ce.log_softmax_b, [logits], save_out=True)
        nll_in = tape.one(el * ce.nll_b, [ls]) if ce.nll_cast else ls
        loss = tape.one(4, [nll_in], saved=[nll_in])
        tape.drop(*{id(t): t for t in (ls, nll_in, logits)}.values())
        return loss


#: The families each programme writes (sequential blocks, Mixtral's sparse MoE; the rest keep the fitted allocator
#: share).
PROGRAMS: dict[str, type[_Llama] | type[_Gpt2] | type[_Bert]] = {
    "llama": _Llama, "mistral": _Llama, "qwen2": _Llama, "gemma": _Llama, "mixtral": _Mixtral, "gpt2": _Gpt2,
    "bert": _Bert}


def timeline_covers(spec: StepSpec, *, lora: bool, flash: bool, quantized: bool) -> bool:
    """Whether ``timeline`` writes this step."""
    arch = spec.arch
    return not (arch.family not in PROGRAMS or (arch.num_experts and arch.family != "mixtral") or arch.parallel_block
                or not flash or lora or quantized or (arch.kind == "encoder" and not arch.mlm_head))


def timeline(spec: StepSpec, *, lora: bool = False, flash: bool = True,
             quantized: bool = False) -> dict[str, Any] | None:
    """The step's allocations in order (``advisor.estimator.allocator.replay``'s input), or ``None`` where not written.

    Written: ``PROGRAMS``' families (BERT with its masked-LM head), with SDPA attention: full training (its loss
    as transformers 5 computes it, in the forward; under ``spec.checkpointing`` every layer checkpointed as
    transformers does, ``Tape.checkpoint``), a forward over the sequence (``gen_len=0``: its logits and a decoder's
    DynamicCache live to the end), or a generation (``spec.gen_len``: ``step_generate.generate``).
    """
    if not timeline_covers(spec, lora=lora, flash=flash, quantized=quantized):
        return None
    tape = Tape(spec.train)
    model = PROGRAMS[spec.arch.family](tape, spec)
    if spec.gen_len and not spec.train:  # generate(): the prefill, then the decode steps' cache growth
        return generate(model)
    logits = model.forward()
    loss = model.loss(logits) if spec.train else None  # in the forward (labels given), under autocast
    model.end_forward()
    if loss is not None:  # the model's output (its logits and DynamicCache) dropped before backward
        tape.drop(*model.cache)
        tape.backward(loss)
        tape.drop(loss)
    else:  # the caller holds the output to the end: the logits of every position and the cache
        tape.drop(logits, *model.cache)
    return tape.allocations([spec.tokens * 8] * (2 if spec.train else 1))


#: Precisions the programmes write: (parameters' bytes, compute bytes, autocast); fp8 / int8 / int4 steps run other
#: kernels and keep the fitted share.
_DTYPES = {"fp32": (4, 4, False), "tf32": (4, 4, False), "fp16": (2, 2, False), "bf16": (2, 2, False),
           "amp-fp16": (4, 2, True), "amp-bf16": (4, 2, True)}


def builder_timeline(arch: TransformerArch, *, b: int, s: int, train: bool, precision: str, gen_len: int | None,
                     lora: bool, checkpointing: bool, flash: bool, quantized: bool, last_logit: bool = True,
                     repeat_kv: bool = False) -> Callable[[], Any] | None:
    """The closed-form builder's step as a deferred timeline (``options.timeline``), or ``None`` where not written.

    Deferred: a workload built for a batch it is never priced at costs nothing.  A generating inference (``gen_len``
    > 0) is transformers 5's ``generate()`` (``advisor.workload.step_generate``: the prefill's head over the last
    position, then the cache grown).  Not written: a loop over the model's plain forward (``last_logit=False``: the
    only measured one, validate's zoo GPT-2, caches views of its fused q|k|v projection, as the closed form's
    ``kv_cache_peak_bytes`` prices, where transformers 5 copies the keys and values) and ``repeat_kv``
    (transformers < 4.48's copies of the grouped keys and values).
    """
    generating = bool(gen_len) and not train
    if precision not in _DTYPES or arch.kind == "encoder-decoder" or (generating and (repeat_kv or not last_logit)):
        return None
    p_b, a_b, amp = _DTYPES[precision]
    cache = arch.kind == "decoder" and not (train and checkpointing)
    spec = StepSpec(arch, b, s, train, amp, a_b, p_b, use_cache=cache, checkpointing=train and checkpointing,
                    logits_to_keep=1 if generating else 0, gen_len=(gen_len or 0) if generating else 0)
    if not timeline_covers(spec, lora=lora, flash=flash, quantized=quantized):
        return None
    return functools.partial(_timeline_of, spec)


@functools.lru_cache(maxsize=32)
def _timeline_of(spec: StepSpec) -> dict[str, Any] | None:
    """``timeline`` of a covered step, kept for the steps priced last.

    An estimate repeated, or another card count, builds its workload again but replays the same step
    (``advisor.estimator.memory`` keeps replays by the identity of the allocations).
    """
    return timeline(spec)
