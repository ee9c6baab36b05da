"""Issues 24/25: validate builds every torch.optim optimizer name as named; the 8-bit lever covers every Adam/AdamW.

The names' meaning comes from ``advisor.optimizers`` (update, implementation, which library ships the step).
"""

from __future__ import annotations

import pytest

from advisor.errors import AdvisorError
from advisor.fit_levers import model_levers
from advisor.optimizers import NOT_IN_TORCH, OPTIMIZER_NAMES, algorithm, implementation
from advisor.precision import optimizer_state_bytes

TORCH_NAMES = [n for n in OPTIMIZER_NAMES if n not in NOT_IN_TORCH]
ADAM_FAMILY = [n for n in OPTIMIZER_NAMES if algorithm(n) in ("adam", "adamw")]


def test_the_names_torch_does_not_ship_are_the_other_libraries() -> None:
    assert set(NOT_IN_TORCH) == {"adamw-8bit", "adamw-hf", "bertadam"}
    assert set(NOT_IN_TORCH) <= set(OPTIMIZER_NAMES)
    assert {"adamw-loop", "adam-fused", "sgd-momentum-loop", "adafactor"} <= set(TORCH_NAMES)


@pytest.mark.parametrize("name", TORCH_NAMES)
def test_make_optimizer_builds_the_update_issued_as_named(name: str) -> None:
    torch = pytest.importorskip("torch")
    from advisor.validate.models import make_optimizer

    param = torch.nn.Parameter(torch.randn(4, 3))
    opt = make_optimizer(name, [param])
    update = algorithm(name)
    cls = {"sgd": torch.optim.SGD, "sgd-momentum": torch.optim.SGD, "adam": torch.optim.Adam,
           "adamw": torch.optim.AdamW, "adafactor": torch.optim.Adafactor}[update]
    assert type(opt) is cls
    assert bool(opt.defaults.get("momentum")) == (update == "sgd-momentum")
    issued = implementation(name)
    assert bool(opt.defaults.get("fused")) == (issued == "fused")  # fused AdamW/Adam run on CPU in torch >= 2.4
    assert (opt.defaults.get("foreach") is False) == (issued == "loop")
    before = param.detach().clone()
    param.grad = torch.ones_like(param)
    opt.step()  # the step itself runs (fused kernels included) and moves the weights
    assert not torch.equal(param.detach(), before)
    states = {"sgd": 0, "sgd-momentum": 1, "adam": 2, "adamw": 2}  # tensors of state per parameter, step aside
    if update in states:
        kept = [k for k, v in opt.state[param].items() if torch.is_tensor(v) and v.shape == param.shape]
        assert len(kept) == states[update]


@pytest.mark.parametrize("name", sorted(NOT_IN_TORCH))
def test_make_optimizer_refuses_other_libraries_steps_by_name(name: str) -> None:
    torch = pytest.importorskip("torch")
    from advisor.validate.models import make_optimizer

    with pytest.raises(AdvisorError, match=name) as err:
        make_optimizer(name, [torch.nn.Parameter(torch.zeros(2))])
    assert NOT_IN_TORCH[name] in str(err.value)
    assert err.value.hint is not None and all(n in err.value.hint for n in TORCH_NAMES)
    with pytest.raises(AdvisorError, match="accepted: sgd"):
        make_optimizer("lion", [torch.nn.Parameter(torch.zeros(2))])


@pytest.mark.parametrize("precision", ["amp-bf16", "bf16", "fp32"])
def test_the_8bit_lever_is_offered_for_every_adam_variant_with_its_bytes(precision: str) -> None:
    for name in OPTIMIZER_NAMES:
        levers = model_levers(train=True, optimizer=name, lora=None, quantize_base=None, precision=precision)
        eight = [lv for lv in levers if lv.lever == "8-bit optimizer"]
        assert bool(eight) == (name in ADAM_FAMILY), name
        if eight:
            now = optimizer_state_bytes(name, precision)
            assert f"2 B/param of state instead of {now:.0f}" in eight[0].note  # 8 under amp/fp32, 4 under bf16
            assert eight[0].kwargs == {"optimizer": "adamw-8bit"}
    assert "bertadam" in ADAM_FAMILY and "adamw-fused" in ADAM_FAMILY and "sgd-loop" not in ADAM_FAMILY
    # not while LoRA trains the adapters only, nor serving
    assert not [lv for lv in model_levers(train=True, optimizer="adam-loop", lora=8, quantize_base=None,
                                          precision="amp-bf16") if lv.lever == "8-bit optimizer"]


@pytest.mark.parametrize(("name", "precision"), [("adamw-loop", "amp-bf16"), ("adam-fused", "bf16"),
                                                 ("bertadam", "fp32")])
def test_the_8bit_levers_estimate_cuts_the_states_by_their_bytes(name: str, precision: str) -> None:
    from advisor.api import estimate

    kw = dict(batch_size=1, seq_len=512, precision=precision, calibration=None)
    base = estimate("gpt2", "rtx-4090", optimizer=name, **kw).memory.breakdown_bytes
    eight = estimate("gpt2", "rtx-4090", optimizer="adamw-8bit", **kw).memory.breakdown_bytes
    ratio = optimizer_state_bytes("adamw-8bit", precision) / optimizer_state_bytes(name, precision)
    assert eight["optimizer"] == pytest.approx(base["optimizer"] * ratio, rel=1e-6)
    assert eight["weights"] == base["weights"] and eight["gradients"] == base["gradients"]


def test_fit_advice_lists_the_8bit_optimizer_for_a_loop_adam() -> None:
    """gpt2-xl with AdamW states on a 24 GB card: the 8-bit row is there, smaller by about the states' saving."""
    from advisor.advice import fit_options
    from advisor.api import estimate

    kw = dict(batch_size=1, seq_len=1024, calibration=None)
    for name in ("adamw-loop", "bertadam"):
        adv = fit_options("gpt2-xl", "rtx-4090", optimizer=name, max_gpus=1, **kw)
        assert not adv.fits
        row = next(o for o in adv.options if o.levers == ("8-bit optimizer",))
        assert row.how == "--optimizer adamw-8bit" and row.kwargs["optimizer"] == "adamw-8bit"
        base = estimate("gpt2-xl", "rtx-4090", optimizer=name, **kw).memory
        saved = base.breakdown_bytes["optimizer"] * (1 - optimizer_state_bytes("adamw-8bit") / 8)
        # the allocator's overhead moves a little with the tensors' sizes: within a tenth of the saving
        assert base.total_bytes - row.memory_per_gpu_bytes == pytest.approx(saved, rel=0.1)
