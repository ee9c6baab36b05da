"""One model, one price (issue 25): the doors to the same model agree.

Traced presets against the same torch module passed as a module (``estimate(module, example_inputs=...)``):
the estimator decides NCHW transposes, cuDNN's call costs, the loss and the optimizer by the ops a workload has,
never by where it came from, so the two agree within 3% in step time and memory.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from advisor import estimate  # noqa: E402
from advisor.workload import get_preset, zoo  # noqa: E402

_SAME_MODULE = [("resnet50", "train", 16, "amp-bf16", "RTX 3090"), ("resnet50", "infer", 64, "amp-fp16", "RTX 4090"),
                ("vit-b16", "train", 8, "amp-bf16", "H100 SXM5 80GB"), ("efficientnet-b0", "train", 16, "fp32", "A100 SXM4 80GB"),
                ("mobilenet-v2", "infer", 32, "bf16", "H100 SXM5 80GB"), ("lstm-lm", "train", 16, "fp32", "A100 SXM4 80GB")]


@pytest.mark.parametrize(("preset", "mode", "batch", "precision", "gpu"), _SAME_MODULE,
                         ids=[f"{c[0]}-{c[1]}" for c in _SAME_MODULE])
def test_traced_preset_and_its_module_cost_the_same(preset: str, mode: str, batch: int, precision: str,
                                                    gpu: str) -> None:
    cfg = get_preset(preset).config
    module, facts = zoo.build(cfg["builder"], device="meta")
    with torch.device("meta"):
        x = (torch.empty(batch, facts["channels"], cfg["image_size"], cfg["image_size"]) if facts["input"] == "image"
             else torch.empty(batch, cfg["seq_len"], dtype=torch.long))
    kw = {"gpu": gpu, "precision": precision, "mode": mode, "optimizer": "sgd-momentum"}
    by_name = estimate(preset, batch_size=batch, **kw)
    as_module = estimate(module, example_inputs=(x,), **kw)
    assert as_module.time.step_s == pytest.approx(by_name.time.step_s, rel=0.03)
    assert as_module.memory.total_bytes == pytest.approx(by_name.memory.total_bytes, rel=0.03)
