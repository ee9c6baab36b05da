"""Torch module definitions: the traced presets' modules, and the GPT-2 / BERT / Llama-style models validate runs.

The language models (``TinyGPT``, ``TinyBert``, ``TinyLlama``) are defined in ``advisor.workload.zoo_lm``.

torch and torchvision are imported inside the functions only: importing this module is free.
"""

from __future__ import annotations

from typing import Any

from advisor.errors import UnknownModelError
from advisor.workload.zoo_lm import Lazy, TinyBert, TinyGPT, TinyLlama

TORCHVISION = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "vgg16", "vgg19", "mobilenet_v2",
               "efficientnet_b0", "vit_b_16", "vit_l_16")
#: Language-model shapes (``validate``'s zoo): family, vocab, hidden, layers, heads, intermediate, max positions.
TRANSFORMERS: dict[str, dict[str, Any]] = {
    "gpt2": {"family": "gpt", "vocab": 50257, "d": 768, "layers": 12, "heads": 12, "ff": 3072, "max_pos": 1024},
    "gpt2-medium": {"family": "gpt", "vocab": 50257, "d": 1024, "layers": 24, "heads": 16, "ff": 4096,
                    "max_pos": 1024},
    "gpt2-tiny": {"family": "gpt", "vocab": 2048, "d": 128, "layers": 2, "heads": 4, "ff": 512, "max_pos": 256},
    "bert-base": {"family": "bert", "vocab": 30522, "d": 768, "layers": 12, "heads": 12, "ff": 3072, "max_pos": 512},
    # a small Llama-style config: RMSNorm, rotary positions, SwiGLU, untied head (Llama 2's shape, scaled down)
    "llama-small": {"family": "llama", "vocab": 32000, "d": 1024, "layers": 8, "heads": 16, "ff": 2816,
                    "max_pos": 4096},
    "llama-tiny": {"family": "llama", "vocab": 2048, "d": 128, "layers": 2, "heads": 4, "ff": 344, "max_pos": 512},
}
BUILDERS = ("mnist-cnn", "lstm-lm", "vgg16-transfer", *TORCHVISION, *TRANSFORMERS)


def build(name: str, device: str = "meta", **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    """(module, facts) for a zoo name, built on ``device`` (``meta``: no memory).

    ``facts`` has ``frozen_prefixes`` (parameter-name prefixes that are frozen), ``input``
    (``image`` or ``tokens``), ``channels``/``vocab_size``, and ``max_positions`` for the
    ``TRANSFORMERS`` (``None``: no limit of the model's own).

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
        if name in TRANSFORMERS:
            cfg = TRANSFORMERS[name]
            return transformer(name, **kwargs), {"input": "tokens", "vocab_size": cfg["vocab"],
                                                 "max_positions": cfg["max_pos"], "frozen_prefixes": ()}
        if name in TORCHVISION:
            import torchvision

            return getattr(torchvision.models, name)(weights=None, **kwargs), {
                "input": "image", "channels": 3, "frozen_prefixes": ()}
    raise UnknownModelError(f"unknown zoo model {name!r}", f"accepted: {', '.join(BUILDERS)}")


def task_loss(facts: dict[str, Any], targets: Any = None) -> Any:
    """The loss a zoo module trains with: ``(output, inputs) -> scalar`` (the shape of a traced step's loss).

    Cross-entropy, as each is trained: a language model's over its vocabulary at every position against the
    input ids (``facts['input'] == 'tokens'``: what validate times and the traced presets cost), an image
    classifier's over its classes against one label per sample (``targets``; ``None``: zeros created in the
    step, which a fake-tensor trace fakes).  Its log-softmax output is saved for backward, and its backward
    writes two gradients the size of the logits: for a language model (logits at every position) that is
    memory and time the sum of the output's means (``trace_step.default_loss``) does not have.
    """
    import torch
    import torch.nn.functional as F

    if facts["input"] == "tokens":
        return lambda out, inputs: F.cross_entropy(out.flatten(0, 1), inputs[0].flatten())
    if targets is not None:
        return lambda out, _inputs: F.cross_entropy(out, targets)
    return lambda out, _inputs: F.cross_entropy(out, torch.zeros(out.shape[0], dtype=torch.long, device=out.device))


def task_loss_note(facts: dict[str, Any]) -> str:
    """What :func:`task_loss` trains with, for a workload's assumptions."""
    if facts["input"] == "tokens":
        return ("loss: cross-entropy over the vocabulary at every position (log-softmax saved for backward, two "
                "logits-sized gradients in backward)")
    return "loss: cross-entropy over the classes against one label per sample"


def transformer(name: str, **overrides: Any) -> Any:
    """The ``TRANSFORMERS`` shape ``name`` as a :class:`TinyGPT` / :class:`TinyBert` / :class:`TinyLlama`.

    ``overrides`` go to the constructor (``attention="eager"`` for a GPT, ``kv_heads`` for a Llama).

    Raises:
        UnknownModelError: no such shape.
    """
    if name not in TRANSFORMERS:
        raise UnknownModelError(f"unknown zoo transformer {name!r}", f"accepted: {', '.join(TRANSFORMERS)}")
    cfg = TRANSFORMERS[name]
    shape = {"vocab_size": cfg["vocab"], "hidden": cfg["d"], "layers": cfg["layers"], "heads": cfg["heads"],
             "intermediate": cfg["ff"]}
    if cfg["family"] == "gpt":
        return TinyGPT(**{"n_positions": cfg["max_pos"], "attention": "sdpa", **shape, **overrides})
    if cfg["family"] == "bert":
        return TinyBert(**{"n_positions": cfg["max_pos"], **shape, **overrides})
    # validate's Llama shapes have no GQA: as many key/value heads as query heads
    return TinyLlama(**{"kv_heads": cfg["heads"], **shape, **overrides})


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
    """Torchvision VGG16 conv base (no top; frozen) + Flatten + Dense 256 + ReLU + Dense ``num_classes``."""
    import torchvision
    from torch import nn

    base = torchvision.models.vgg16(weights=None).features
    for p in base.parameters():
        p.requires_grad_(False)
    return nn.Sequential(base, nn.Flatten(), nn.Linear(512 * 7 * 7, 256), nn.ReLU(), nn.Linear(256, num_classes))


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
            logits: torch.Tensor = self.head(out)
            return logits

    return LstmLMModule


LstmLM = Lazy(_lstm_lm_cls)


__all__ = ["BUILDERS", "TORCHVISION", "TRANSFORMERS", "LstmLM", "TinyBert", "TinyGPT", "TinyLlama", "build",
           "mnist_cnn", "task_loss", "task_loss_note", "transformer", "vgg16_transfer"]
