"""Optimizer names: the update each one runs (its algorithm: what state it keeps) and how its kernels are issued.

Pure data, no imports: the option names (``advisor.workload.options.OPTIMIZERS``), the state-bytes rule
(``advisor.precision.optimizer_state_bytes``), the step's kernels and host dispatches (``advisor.workload.costs``,
``advisor.workload.eager``), the allocator replay, fit advice's 8-bit lever (any Adam/AdamW) and validate's torch
optimizer (``NOT_IN_TORCH`` names the steps torch.optim does not ship) all read the name through here.

Implementations:

- ``foreach``: torch.optim's CUDA default since PyTorch 2.0: each update line is one ``torch._foreach_*`` call over
  the whole parameter list (``multi_tensor_apply`` kernels);
- ``fused``: one kernel pass over the list for the whole update (``torch.optim.AdamW(fused=True)``, apex's
  ``FusedAdam``, what NVIDIA DeepLearningExamples' BERT fine-tuning runs under ``--fp16``);
- ``loop``: a Python loop over the parameters, each update line a kernel per parameter (torch.optim with
  ``foreach=False``, ``_single_tensor_adamw``; Hugging Face transformers' ``AdamW``, the Trainer's ``adamw_hf``
  default until transformers PR #25109 (2023-07) made it ``adamw_torch``; NVIDIA DeepLearningExamples' BERT
  ``BertAdam``, its fp32 fine-tuning optimizer, which clips each parameter's gradient norm inside the loop);
- ``library``: another library's own step (bitsandbytes' 8-bit AdamW, Hugging Face's Adafactor), priced by its
  bare update as before.
"""

from __future__ import annotations

IMPLEMENTATIONS: tuple[str, ...] = ("foreach", "fused", "loop", "library")

#: Every accepted optimizer name: (algorithm, implementation).  The algorithm decides the state kept (two moments
#: for the Adam family, one for SGD with momentum); the implementation how the step's kernels are issued.
OPTIMIZER_NAMES: dict[str, tuple[str, str]] = {
    "sgd": ("sgd", "foreach"),
    "sgd-momentum": ("sgd-momentum", "foreach"),
    "adam": ("adam", "foreach"),
    "adamw": ("adamw", "foreach"),
    "adafactor": ("adafactor", "library"),
    "adamw-8bit": ("adamw-8bit", "library"),
    "adam-fused": ("adam", "fused"),
    "adamw-fused": ("adamw", "fused"),
    "sgd-loop": ("sgd", "loop"),
    "sgd-momentum-loop": ("sgd-momentum", "loop"),
    "adam-loop": ("adam", "loop"),
    "adamw-loop": ("adamw", "loop"),
    "adamw-hf": ("adamw", "loop"),  # transformers.AdamW (optimization.py, transformers 4.x; removed in 5)
    "bertadam": ("adamw", "loop"),  # DeepLearningExamples' PyTorch BERT optimization.py BertAdam
}

#: The names whose step torch.optim does not ship, and whose it is (``advisor validate`` builds torch.optim's only).
NOT_IN_TORCH: dict[str, str] = {
    "adamw-8bit": "bitsandbytes' AdamW8bit",
    "adamw-hf": "Hugging Face transformers' AdamW (4.x)",
    "bertadam": "NVIDIA DeepLearningExamples' BertAdam",
}


def algorithm(name: str) -> str:
    """The update ``name`` runs (``adamw`` for ``adamw-fused``, ``bertadam``, ...); an unknown name as given."""
    return OPTIMIZER_NAMES.get(name, (name, ""))[0]


def implementation(name: str) -> str:
    """How ``name``'s kernels are issued (``IMPLEMENTATIONS``); ``""`` for an unknown name."""
    return OPTIMIZER_NAMES.get(name, (name, ""))[1]
