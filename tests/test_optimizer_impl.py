"""Optimizer implementations: foreach, fused and per-parameter loops, each step's kernels counted from its source.

torch.optim's own implementations are run here (the installed torch, meta tensors, a dispatch counter:
benchmarks/count_optimizer_bytes.py); Hugging Face's ``AdamW`` and DeepLearningExamples' ``BertAdam`` are not
installable here, so their update lines, as their sources write them (advisor/workload/costs.py cites the files), are
dispatched the same way and counted.
"""

from __future__ import annotations

import pytest

from advisor.errors import EstimateError, WorkloadError
from advisor.optimizers import OPTIMIZER_NAMES, algorithm, implementation
from advisor.precision import optimizer_state_bytes
from advisor.workload.costs import FUSED_PASS_BYTES, LOOP_KERNELS, OPTIMIZER_PASS_BYTES, optimizer_op
from advisor.workload.eager import OPTIMIZER_STEP_OPS, optimizer_step_ops
from advisor.workload.options import OPTIMIZERS, WorkloadOptions
from tests import benchmark_scripts

torch = pytest.importorskip("torch")


def _script():  # type: ignore[no-untyped-def]
    return benchmark_scripts.load("count_optimizer_bytes")


@pytest.mark.parametrize(("name", "make"), [
    ("sgd-loop", lambda ps: torch.optim.SGD(ps, lr=1e-3, foreach=False)),
    ("sgd-momentum-loop", lambda ps: torch.optim.SGD(ps, lr=1e-3, momentum=0.9, foreach=False)),
    ("adam-loop", lambda ps: torch.optim.Adam(ps, foreach=False)),
    ("adamw-loop", lambda ps: torch.optim.AdamW(ps, foreach=False)),
])
def test_torch_loops_launch_the_kernels_counted(name: str, make) -> None:  # type: ignore[no-untyped-def]
    ops, kernels, per_param, _ = _script().loop_counts(make)
    assert (ops, kernels, per_param) == LOOP_KERNELS[name]


def test_fused_adamw_is_one_pass_over_its_states() -> None:
    per_param, passes = _script().count("adamw-fused", torch.optim.AdamW, fused=True)
    assert passes == FUSED_PASS_BYTES["adamw"][1] == 1
    # the schema marks the gradients written too (only a GradScaler's unscale writes them): 4 B more than the kernel
    assert per_param == FUSED_PASS_BYTES["adamw"][0] + 4


def _dispatched(update) -> tuple[int, int, float]:  # type: ignore[no-untyped-def]
    """(dispatched ops, kernels, bytes per element) of ``update(p, grad, m, v)`` on one meta parameter."""
    script = _script()
    p = torch.nn.Parameter(torch.randn(4096, device="meta"))
    p.grad = torch.randn_like(p)
    m, v = torch.zeros_like(p), torch.zeros_like(p)
    mode = script._Kernels()
    with mode, torch.no_grad():
        update(p, p.grad, m, v)
    return mode.ops, mode.kernels, mode.bytes / p.numel()


def test_hugging_face_adamw_per_parameter() -> None:
    def update(p, g, m, v):  # type: ignore[no-untyped-def]  # transformers 4.x AdamW.step, weight_decay 0
        m.mul_(0.9).add_(g, alpha=0.1)
        v.mul_(0.999).addcmul_(g, g, value=0.001)
        denom = v.sqrt().add_(1e-6)
        p.addcdiv_(m, denom, value=-1e-3)

    assert _dispatched(update) == LOOP_KERNELS["adamw-hf"]


def test_bertadam_per_parameter_clips_then_updates() -> None:
    def update(p, g, m, v):  # type: ignore[no-untyped-def]  # DeepLearningExamples BertAdam.step, a decayed tensor
        g = p.grad.data
        torch.nn.utils.clip_grad_norm_(p, 1.0, error_if_nonfinite=False, foreach=False)  # torch 1.x: no foreach
        m.mul_(0.9).add_(g, alpha=0.1)
        v.mul_(0.999).addcmul_(g, g, value=0.001)
        u = m / (v.sqrt() + 1e-6)
        u += 0.01 * p.data
        p.data.add_(-(1e-3 * u))

    clip_ops, clip_kernels, clip_bytes = _script().clip_counts()
    assert (clip_ops, clip_kernels, clip_bytes) == (8, 8, 12.0)
    assert _dispatched(update) == LOOP_KERNELS["bertadam"]


def test_every_name_has_an_algorithm_and_an_implementation() -> None:
    assert tuple(OPTIMIZER_NAMES) == OPTIMIZERS
    for name in OPTIMIZERS:
        assert optimizer_state_bytes(name, "fp32") == optimizer_state_bytes(algorithm(name), "fp32")
        if implementation(name) == "loop":
            assert name in LOOP_KERNELS
    assert algorithm("bertadam") == algorithm("adamw-hf") == "adamw"
    assert implementation("adamw") == "foreach" and implementation("adamw-fused") == "fused"


def test_the_step_op_follows_the_implementation() -> None:
    trainable, tensors = 1_000_000, 100
    foreach = optimizer_op(trainable, "fp32", "adamw", tensors)
    fused = optimizer_op(trainable, "fp32", "adamw-fused", tensors)
    loop = optimizer_op(trainable, "fp32", "adamw-loop", tensors)
    bert = optimizer_op(trainable, "amp-bf16", "bertadam", tensors)
    assert (foreach.kind, foreach.count) == ("optimizer", OPTIMIZER_PASS_BYTES["adamw"][1])
    assert foreach.bytes == 80.0 * trainable
    assert (fused.kind, fused.bytes, fused.count) == ("optimizer", 28.0 * trainable, 1)
    assert (loop.kind, loop.bytes, loop.count) == ("optimizer_loop", 80.0 * trainable, 8 * tensors)
    assert (bert.kind, bert.bytes, bert.count) == ("optimizer_loop", 128.0 * trainable, 20 * tensors)  # fp32 master
    assert optimizer_op(trainable, "bf16", "adamw-loop", tensors).bytes == 40.0 * trainable  # 16-bit states
    # the host: torch's loops and fused step run foreach's _init_group; the libraries' loops group nothing
    assert optimizer_step_ops("adamw-loop", tensors) == OPTIMIZER_STEP_OPS["adamw"] + round(tensors * 10 * 1.1 / 2.8)
    assert optimizer_step_ops("adamw-fused", tensors) < optimizer_step_ops("adamw", tensors)
    assert optimizer_step_ops("bertadam", tensors) > optimizer_step_ops("adamw-loop", tensors) - 45


def test_an_unknown_optimizer_names_the_accepted_ones() -> None:
    with pytest.raises(EstimateError, match="unknown optimizer 'adamw-fastest'") as err:
        WorkloadOptions(optimizer="adamw-fastest").validate()
    assert "adamw-fused" in err.value.hint and "bertadam" in err.value.hint and "adamw-loop" in err.value.hint
    with pytest.raises(WorkloadError, match="unknown optimizer 'lamb'"):
        optimizer_state_bytes("lamb")


def test_the_cli_refuses_an_unknown_optimizer(capsys: pytest.CaptureFixture[str]) -> None:
    from advisor.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["estimate", "--model", "gpt2", "--gpu", "A100 SXM4 80GB", "--optimizer", "adamw-fastest"])
    assert exit_.value.code != 0
    assert "adamw-fused" in capsys.readouterr().err


@pytest.mark.slow
def test_bertadam_prices_deeplearningexamples_v100_fp32_squad() -> None:
    """The published row bert-large-v100-fp32-squad names BertAdam, what its harness ran; foreach was 21% fast."""
    table = benchmark_scripts.load("published_table")
    (row,) = [r for r in table.load_rows() if r["id"] == "bert-large-v100-fp32-squad"]
    assert row["optimizer"] == "bertadam"
    measured = float(row["value"])
    rates = {o: table.predict({**row, "optimizer": o})[0] for o in ("adamw", "adamw-fused", "bertadam")}
    assert rates["adamw-fused"] > rates["adamw"] > rates["bertadam"]
    assert abs(rates["bertadam"] / measured - 1) < 0.12 < abs(rates["adamw"] / measured - 1)
