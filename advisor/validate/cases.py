"""The zoo's case table: which models, batches and precisions `validate` runs."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from advisor.errors import UnknownModelError
from advisor.validate.predictors import estimator_model
from advisor.validate.records import ALL_MODELS, QUICK_GPU_MODELS, QUICK_MODELS, ZOO_MODELS, Case


def _lm(model: str, batches: Sequence[int], seq_len: int, precisions: Sequence[str], optimizer: str,
        ckpt: bool = True) -> list[Case]:
    cases = [Case(model, "train", b, p, optimizer, seq_len=seq_len) for b in batches for p in precisions]
    if ckpt:
        cases.append(Case(model, "train", batches[-1], precisions[-1], optimizer, seq_len=seq_len,
                          gradient_checkpointing=True))
    return cases


#: The near-limit pair (GPU only): this model's training step at the largest batch ``estimate`` says fits on
#: the local card, and one above it, so a run checks ``fits`` where it matters.
NEAR_LIMIT_CASE = Case("gpt2", "train", 1, "amp-bf16", "adamw", seq_len=1024)


def near_limit_cases(card: str, base: Case = NEAR_LIMIT_CASE) -> list[Case]:
    """``base`` at the largest batch ``estimate`` says fits on ``card`` (a catalog id) and at one more.

    Empty when not even one sample fits.  The batch comes from the same model ``validate`` predicts with
    (:func:`estimator_model`, re-built at each batch tried), so the pair brackets the estimator's own verdict:
    ``fits`` at the first, not at the second.
    """
    from advisor.api import estimate

    def verdict(b: int) -> Any:
        case = dataclasses.replace(base, batch_size=b)
        model, kwargs = estimator_model(case)
        kwargs.update(batch_size=b, precision=case.precision, mode=case.mode, optimizer=case.optimizer,
                      gradient_checkpointing=case.gradient_checkpointing)
        return estimate(model, card, calibration=None, **kwargs).memory

    first = verdict(base.batch_size)
    if not first.fits:
        return []
    # the estimate's own largest batch (linear scaling from base), then settled on the verdicts near it
    guess = max(int(first.max_batch_size), base.batch_size)
    step = max(1, guess // 64)
    if verdict(guess).fits:
        lo, hi = guess, guess + step
        while verdict(hi).fits:
            lo, hi, step = hi, hi + 2 * step, 2 * step
    else:  # base.batch_size fits, so this ends
        lo, hi = max(base.batch_size, guess - step), guess
        while not verdict(lo).fits:
            lo, hi, step = max(base.batch_size, lo - 2 * step), lo, 2 * step
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if verdict(mid).fits else (lo, mid)
    return [dataclasses.replace(base, batch_size=b) for b in (lo, lo + 1)]


def default_cases(models: Sequence[str] | None = None, *, quick: bool = False, cuda: bool = False,
                  card: str | None = None) -> list[Case]:
    """The zoo's cases: several batch sizes, precisions, optimizers, checkpointing and one decode case.

    Args:
        models: restrict to these names (``None``: the zoo for the mode).
        quick: only the small models (``QUICK_MODELS``); the default set on a CPU.
        cuda: whether the device is a GPU (sizes and precisions for a GPU, else small ones for a CPU).
        card: the local GPU's catalog id: with ``cuda`` (and not ``quick``), the near-limit pair of
            :func:`near_limit_cases` ends ``NEAR_LIMIT_CASE``'s model's list (``None``: no such pair).

    Raises:
        UnknownModelError: a name in ``models`` is not a validate model.
    """
    known = ALL_MODELS
    for name in models or ():
        if name not in known:
            raise UnknownModelError(f"unknown validate model {name!r}", hint=f"accepted: {', '.join(known)}")
    if cuda:
        half = ("amp-bf16", "bf16")
        table: dict[str, list[Case]] = {
            "resnet50": [Case("resnet50", "train", b, p, "sgd-momentum", image_size=224)
                         for b in (32, 128) for p in ("fp32", "amp-fp16")]
                        + [Case("resnet50", "infer", 256, "amp-fp16", image_size=224)],
            "vit-b16": [Case("vit-b16", "train", b, p, "adamw", image_size=224) for b in (32, 64) for p in half]
                       + [Case("vit-b16", "train", 64, "amp-bf16", "adamw", image_size=224,
                               gradient_checkpointing=True)],
            "bert-base": _lm("bert-base", (16, 32), 512, ("fp32", "amp-bf16"), "adamw"),
            "gpt2": [*_lm("gpt2", (8, 16), 1024, ("amp-bf16", "bf16"), "adamw"),
                     Case("gpt2", "infer", 8, "bf16", seq_len=512, gen_len=64)],
            "gpt2-medium": _lm("gpt2-medium", (4, 8), 1024, ("amp-bf16",), "adam"),
            "llama-small": _lm("llama-small", (4, 8), 2048, ("bf16", "amp-bf16"), "adamw"),
            "lstm-lm": [Case("lstm-lm", "train", b, p, "adam", seq_len=256) for b in (32, 128)
                        for p in ("fp32", "amp-fp16")],
            "mnist-cnn": [Case("mnist-cnn", "train", b, "fp32", o, image_size=28)
                          for b, o in ((256, "sgd"), (1024, "adam"))],
        }
    else:
        table = {
            "mnist-cnn": [Case("mnist-cnn", "train", b, "fp32", o, image_size=28)
                          for b, o in ((32, "sgd"), (64, "adam"))],
            "lstm-lm": [Case("lstm-lm", "train", 8, "fp32", "adam", seq_len=32)],
            "gpt2-tiny": [Case("gpt2-tiny", "train", b, "fp32", "adamw", seq_len=64) for b in (4, 8)]
                         + [Case("gpt2-tiny", "train", 8, "amp-bf16", "adamw", seq_len=64),
                            Case("gpt2-tiny", "train", 8, "fp32", "adamw", seq_len=64, gradient_checkpointing=True),
                            Case("gpt2-tiny", "infer", 4, "fp32", seq_len=32, gen_len=16)],
            "llama-tiny": [Case("llama-tiny", "train", 4, "fp32", "sgd-momentum", seq_len=64),
                           Case("llama-tiny", "train", 4, "bf16", "adamw", seq_len=64)],
        }
        # the rest of the zoo on a CPU: one small case each (minutes, not seconds)
        table.update({
            "resnet50": [Case("resnet50", "train", 2, "fp32", "sgd-momentum", image_size=64)],
            "vit-b16": [Case("vit-b16", "infer", 1, "fp32", image_size=224)],
            "bert-base": [Case("bert-base", "train", 1, "fp32", "adamw", seq_len=64)],
            "gpt2": [Case("gpt2", "train", 1, "fp32", "adamw", seq_len=64)],
            "gpt2-medium": [Case("gpt2-medium", "infer", 1, "fp32", seq_len=64)],
            "llama-small": [Case("llama-small", "train", 1, "fp32", "adamw", seq_len=64)],
        })
    if cuda:
        table.update({"gpt2-tiny": [Case("gpt2-tiny", "train", 32, "amp-bf16", "adamw", seq_len=256)],
                      "llama-tiny": [Case("llama-tiny", "train", 32, "bf16", "adamw", seq_len=256)]})
    if cuda and card and not quick:
        table[NEAR_LIMIT_CASE.model] = [*table[NEAR_LIMIT_CASE.model], *near_limit_cases(card)]
    if models:
        wanted = list(models)
    elif cuda:
        wanted = list(QUICK_GPU_MODELS if quick else ZOO_MODELS)
    else:
        wanted = list(QUICK_MODELS)
    cases: list[Case] = []
    for name in wanted:
        if name not in table:
            raise UnknownModelError(f"validate model {name!r} has no cases on this device with these options",
                                    hint=f"available here: {', '.join(table)}")
        cases.extend(table[name])
    return cases
