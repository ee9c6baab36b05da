"""The changes fit advice tries, and how big each is: levers, their words and flags, and their combinations.

No estimates here (``advisor.advice`` makes them): which levers apply to a job, what each is called on the CLI and
in the API, the combinations searched (fewest changes first), the micro-batch a combination can take, and how a
row's levers compare (``covers``: a smaller combination; ``weight``: software before hardware).  Pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from advisor.optimizers import algorithm
from advisor.precision import optimizer_state_bytes

#: LoRA rank suggested when the user gave none (the PEFT examples' and QLoRA paper's common choice).
DEFAULT_LORA_RANK = 16


class Lever(NamedTuple):
    """One change to the workload: its name among a row's levers, words, flags, what it costs, estimate keywords."""

    lever: str
    words: str
    flags: str
    note: str
    kwargs: Mapping[str, Any]

    def combo(self) -> Combo:
        """This change alone, as a combination."""
        return Combo((self.lever,), dict(self.kwargs), [self.words], [self.flags])


class Combo(NamedTuple):
    """A combination of changes tried together: its levers, estimate keywords, words and flags (one per part)."""

    levers: tuple[str, ...]
    kwargs: dict[str, Any]
    words: list[str]
    flags: list[str]


#: No change (the first part of every combination may be empty).
NO_CHANGE = Combo((), {}, [], [])
CHECKPOINTING = Lever("checkpointing", "gradient checkpointing", "--gradient-checkpointing",
                      "recomputes activations in backward: about one more forward pass of compute",
                      {"gradient_checkpointing": True})


def model_levers(*, train: bool, optimizer: str, lora: int | None, quantize_base: str | None,
                 precision: str) -> list[Lever]:
    """The changes to the model's bytes that apply to this job (training: optimizer, LoRA, QLoRA; serving: int8/4)."""
    rank = lora or DEFAULT_LORA_RANK
    levers: list[Lever] = []
    if train and algorithm(optimizer) in ("adam", "adamw") and not lora:  # any Adam/AdamW, however issued
        now, small = optimizer_state_bytes(optimizer, precision), optimizer_state_bytes("adamw-8bit", precision)
        levers.append(Lever("8-bit optimizer", "8-bit optimizer", "--optimizer adamw-8bit",
                            f"bitsandbytes AdamW8bit: {small:.0f} B/param of state instead of {now:.0f}; close to "
                            "AdamW in published results", {"optimizer": "adamw-8bit"}))
    if train and not lora:
        levers.append(Lever("LoRA", f"LoRA rank {DEFAULT_LORA_RANK}", f"--lora-rank {DEFAULT_LORA_RANK}",
                            "trains low-rank adapters only (base frozen): fine-tuning quality close to full for most "
                            "tasks", {"lora_rank": DEFAULT_LORA_RANK}))
    if train and not quantize_base:
        levers.append(Lever("QLoRA", f"QLoRA (nf4 base, LoRA rank {rank})", f"--lora-rank {rank} --quantize-base nf4",
                            "4-bit frozen base dequantized per matmul: slower steps, near-LoRA quality (QLoRA paper)",
                            {"lora_rank": rank, "quantize_base": "nf4"}))
    if not train and precision not in ("int8", "int4"):
        levers += [Lever(p, what, f"--precision {p}", "quantized weights: a small accuracy loss", {"precision": p})
                   for p, what in (("int8", "8-bit weights (W8A8 / LLM.int8)"), ("int4", "4-bit weights (GPTQ / AWQ)"))]
    return levers


def card_strategies(train: bool) -> tuple[tuple[str, str, str], ...]:
    """How more cards are used, alone: (strategy, words, note); training splits the batch, then shards the states."""
    if train:
        return (("ddp", "data parallel (DDP)", "splits the global batch across the cards; each holds the whole model"),
                ("zero3", "ZeRO-3 / FSDP", "splits the batch and shards weights, gradients and optimizer states "
                 "across the cards"))
    return (("tp", "tensor parallel", "splits every layer across the cards"),)


def shard_words(train: bool) -> str:
    """What sharding over more cards is called: ZeRO-3 (training) or tensor parallel (serving)."""
    return "ZeRO-3" if train else "tensor parallel"


def combinations(*, train: bool, checkpointing: bool, levers: Sequence[Lever], more_cards: Sequence[int],
                 card_name: str) -> list[Combo]:
    """Every combination of {checkpointing} x {one model lever} x {sharding over more cards}, fewest changes first."""
    shard = "zero3" if train else "tp"
    first = [NO_CHANGE] + ([CHECKPOINTING.combo()] if checkpointing else [])
    second = [NO_CHANGE] + [lv.combo() for lv in levers]
    hardware = [NO_CHANGE] + [Combo((f"{n} x {shard}",), {"num_gpus": n, "parallelism": shard},
                                [f"{shard_words(train)} over {n} x {card_name}"],
                                [f"--num-gpus {n} --parallelism {shard}"]) for n in more_cards]
    combos = [Combo(a.levers + b.levers + h.levers, {**a.kwargs, **b.kwargs, **h.kwargs},
                    [*a.words, *b.words, *h.words], [*a.flags, *b.flags, *h.flags])
              for a in first for b in second for h in hardware if a.levers + b.levers + h.levers]
    combos.sort(key=lambda c: len(c.levers))
    return combos


def micro_batch(batch: int, dp: int, max_batch: int | None) -> int | None:
    """The largest micro-batch (a multiple of the ``dp`` replicas, below ``batch``) within ``max_batch``."""
    if not max_batch or max_batch < dp or batch <= dp:
        return None
    return max(dp, (min(int(max_batch), batch - 1) // dp) * dp)


def _cards(levers: tuple[str, ...]) -> int:
    """The card count a row's levers ask for (``"4 x zero3"`` -> 4), 0 when it keeps the cards."""
    return max((int(lv.partition(" x ")[0]) for lv in levers if lv.partition(" x ")[0].isdigit()), default=0)


def covers(small: tuple[str, ...], big: tuple[str, ...]) -> bool:
    """Whether the changes ``small`` are among ``big``: the same changes, and no more cards (any strategy)."""
    plain = {lv for lv in small if not lv.partition(" x ")[0].isdigit()}
    need = _cards(small)
    return plain <= set(big) and (need == 0 or _cards(big) >= need)


def weight(levers: tuple[str, ...]) -> tuple[int, int]:
    """How big a change a row is: software changes count 1, more or other cards 2; the same cards first."""
    hardware = [lv for lv in levers if lv == "bigger card" or lv.partition(" x ")[0].isdigit()]
    return len(levers) + len(hardware), len(hardware)
