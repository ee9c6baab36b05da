"""QLoRA priced as it runs (issue 25): bitsandbytes' dequantization kernels against published LoRA / QLoRA steps.

The data, its sources and the rows used: tests/data/qlora/README.md.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from advisor import estimate
from advisor.catalog import get_gpu
from advisor.estimator.time import STRIDED_ELEMENTS_PER_SM_CYCLE
from advisor.workload import load_workload

ROWS = list(csv.DictReader((Path(__file__).parent / "data" / "qlora" / "step_times.csv").open()))


def _step(model: str, gpu: str, quantize: str | None, **kw: object) -> tuple[float, float]:
    """(step seconds, quantized weights) of a LoRA r=8 job on q, v as LitGPT's finetune/lora.py ran it."""
    w = load_workload(model, precision="bf16", optimizer="adamw", lora_rank=8, lora_targets=["q", "v"],
                      quantize_base=quantize, **kw)
    return estimate(w, gpu=gpu, calibration="none").time.step_s, float(w.options.quantized_params)


@pytest.mark.parametrize("model", ["llama-2-7b", "llama-2-13b"])
def test_the_dequantization_costs_what_litgpt_s_qlora_steps_added(model: str) -> None:
    """bnb.nf4-dq minus the 16-bit base, per micro-batch, A100-SXM4-40GB: the extra time is the dequantization's.

    Alpaca samples have their own lengths (the table gives only the longest), so the step itself is not compared:
    the dequantization costs per weight, not per token, and the difference is the same at any length where the GPU,
    not the host, sets the pace (checked at 512 and 1,024 tokens; LitGPT's 7B LoRA step of 142 ms is the estimate's
    at about 600).
    """
    row = next(r for r in ROWS if r["source"] == "litgpt" and r["model"] == model and r["base_kernel"] == "bnb.nf4-dq")
    measured = (float(row["qlora_time"]) - float(row["lora_time"])) * 60 / float(row["micro_steps_per_unit"])
    deltas = []
    for seq in (512, 1024):
        lora, _ = _step(model, "a100-sxm4-40gb", None, batch_size=1, seq_len=seq)
        qlora, _ = _step(model, "a100-sxm4-40gb", "nf4", batch_size=1, seq_len=seq)
        deltas.append(qlora - lora)
    assert deltas[0] == pytest.approx(deltas[1], rel=0.05)
    # 7B: 79 ms against 88 measured (-10%); 13B: 152 against 202 (-25%): the rate fitted on other kernels
    # (advisor.estimator.index_bound.STRIDED_ELEMENTS_PER_SM_CYCLE) is a little fast for bitsandbytes 0.41's NF4 decode
    assert deltas[0] == pytest.approx(measured, rel=0.3)
    assert deltas[0] < measured


def test_the_qlora_slowdown_of_a_gemm_heavy_step_is_its_dequantization_and_no_more() -> None:
    """Issue 25's job: llama-3-8b LoRA r=16 on an A100, b4 s2048, checkpointing.

    Three dequantizations per weight per step (forward, recompute, backward) at the index-bound rate: about 0.12 s on
    a 2.3 s step, +5%, short of the issue's 20%: 8,192 tokens a micro-batch make the step GEMM-bound, where LitGPT's
    one-sample micro-batches (its 39-62% slower QLoRA) spend half of it dequantizing.
    """
    kw = {"batch_size": 4, "seq_len": 2048, "gradient_checkpointing": True, "lora_rank": 16}
    gpu = get_gpu("a100-sxm4-80gb")
    lora = estimate("llama-3-8b", gpu=gpu, calibration="none", **kw).time.step_s
    qlora_w = load_workload("llama-3-8b", quantize_base="nf4", **kw)
    qlora = estimate(qlora_w, gpu=gpu, calibration="none").time.step_s
    rate = (gpu.sm_count or 0) * (gpu.boost_clock_mhz or 0) * 1e6 * STRIDED_ELEMENTS_PER_SM_CYCLE
    expected = 3 * qlora_w.options.quantized_params / rate
    assert qlora - lora == pytest.approx(expected, rel=0.15)
    assert 1.03 < qlora / lora < 1.2


def test_qwen_s_4bit_steps_cost_per_weight_not_per_token() -> None:
    """The check at other tokens per step (Qwen's GPTQ Int4 Q-LoRA, 256 to 8,192 tokens a micro-batch): the extra time
    per micro-batch stays within a factor of 2.5 while the tokens grow 32-fold and the LoRA step 18-fold, as a
    per-weight cost does; the ratio QLoRA / LoRA falls from 2.5-3.3x to 1.05-1.06x."""
    for model in ("qwen-7b", "qwen-14b"):
        rows = [r for r in ROWS if r["model"] == model]
        extra = [float(r["qlora_time"]) - float(r["lora_time"]) for r in rows]
        lora = [float(r["lora_time"]) for r in rows]
        assert max(extra) / min(extra) < 2.6 and lora[-1] / lora[0] > 17
        assert float(rows[0]["qlora_time"]) / lora[0] > 2.4 and float(rows[-1]["qlora_time"]) / lora[-1] < 1.07
