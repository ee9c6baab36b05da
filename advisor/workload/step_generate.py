"""Generation's step on the tape: the prefill, then the decode steps' cache growth, as transformers 5's ``generate()``.

``advisor.workload.step_timeline`` writes a programme's forward; for a generating inference (``gen_len`` > 0) this
module writes what ``GenerationMixin._sample`` (transformers 5, generation/utils.py) does around it:

- the prefill: the model's forward over the prompt with ``logits_to_keep=1`` (the LM head over the last position of
  each sequence, its logits in the dtype the model returns) and ``use_cache=True`` (each layer's keys and values
  copied into the ``DynamicCache`` by ``torch.cat``, held by ``model_kwargs`` beyond the forward);
- ``next_token_logits = outputs.logits[:, -1].to(copy=True, dtype=torch.float32)`` (an fp32 copy), then
  ``del outputs`` (the prefill's logits freed) before the first decode step;
- the decode steps: ``DynamicLayer.update`` grows each layer's keys, then values, by ``torch.cat`` (a new tensor, the
  old freed when the cache drops it).  Written as the closed form prices generation
  (``transformer_memory.kv_cache_peak_bytes``): every layer's keys and values grown to ``seq_len + gen_len - 1``
  positions (the steps before the last), then the last step's growth to ``seq_len + gen_len``, layer by layer, one
  tensor's old copy live beside the new one.  The one-token forwards' activations are
  left out (a token's worth per layer), and so are the segments the allocator leaves cached as each step asks for one
  token more than the block it freed: it releases free cached segments (``cudaFree``) before an allocation fails,
  so they are not memory a generation needs.

The model is loaded in its own dtype (``from_pretrained(torch_dtype=...)``; the step's ``loaded_in_dtype``), not
built in fp32 and cast as validate builds its zoo: the Qwen2.5 speed benchmark's Hugging Face ``generate()`` rows
(tests/data/published_measurements.csv, ``qwen25-7b-a100-hf-mem-in1``) hold 14.38 GiB at most
(``max_memory_allocated``) for 7.62 B bf16 parameters (14.19 GiB): an fp32 copy (28 GiB) was never on the device.

Pure Python, no torch.
"""

from __future__ import annotations

from typing import Any, Protocol

from advisor.workload.step_tape import StepSpec, Tape, Tensor


class Written(Protocol):
    """A programme (``step_tape.Program`` with a ``forward``): any family whose forward ends in ``Program.head``."""

    tape: Tape
    spec: StepSpec
    cache: list[Tensor]

    def forward(self) -> Tensor: ...

    def end_forward(self) -> None: ...


def generate(model: Written) -> dict[str, Any]:
    """The allocations of ``model``'s prefill (its spec's ``logits_to_keep``) and decode (``gen_len`` tokens)."""
    tape, sp = model.tape, model.spec
    logits = model.forward()
    model.end_forward()
    scores = tape.one(sp.b * sp.arch.vocab_size * 4, [logits])  # next_token_logits: an fp32 copy
    tape.drop(logits)  # del outputs: the cache lives on in model_kwargs
    cache: list[Tensor] = model.cache
    per_position = [t.nbytes // sp.s for t in cache]
    for positions in (sp.s + sp.gen_len - 1, sp.s + sp.gen_len)[2 - min(sp.gen_len, 2):]:
        grown = []
        for old, n in zip(cache, per_position, strict=True):  # keys, then values, layer by layer (as filled)
            grown.append(tape.one(n * positions, [old]))
            tape.drop(old)
        cache = grown
    tape.drop(scores, *cache)
    # the model generate() runs is loaded by from_pretrained in its own dtype: never built in fp32 and cast
    return {**tape.allocations([sp.tokens * 8]), "loaded_in_dtype": True}
