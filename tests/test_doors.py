"""Which door prices a named Hugging Face model (issue 25; docs/doors.md).

The closed form is the default; ``door="trace"`` (``--door trace``) builds the transformers module the preset,
config.json or Hub id names and traces one step, cached; the estimate's JSON says which door priced it; and both doors
agree within the conformance harness's bounds at full size on GPT-2.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import benchmark_scripts
import pytest

from advisor import estimate
from advisor.cli import main
from advisor.errors import AdvisorError, EstimateError, WorkloadError
from advisor.workload import from_config, from_preset, load_workload
from advisor.workload.door import door_of
from advisor.workload.options import OptionError, WorkloadOptions

HAS_TRANSFORMERS = importlib.util.find_spec("transformers") is not None
needs_transformers = pytest.mark.skipif(not HAS_TRANSFORMERS,
                                        reason="transformers is an optional extra (gpu-advisor[hf]); not installed")
GPU = "h100-sxm5-80gb"
SMALL_GPT2 = {"model_type": "gpt2", "n_embd": 256, "n_layer": 2, "n_head": 4, "vocab_size": 1000, "n_positions": 256,
              "_name_or_path": "tiny-gpt2"}


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPU_ADVISOR_CACHE_DIR", str(tmp_path / "cache"))


def test_the_closed_form_is_the_default_and_says_so() -> None:
    w = from_preset("gpt2", batch_size=2, seq_len=128)
    assert door_of(w) == "closed"
    e = estimate("gpt2", gpu=GPU, batch_size=2, seq_len=128, calibration="none")
    assert e.to_dict()["workload"]["door"] == "closed"


def test_a_traced_preset_says_trace() -> None:
    e = estimate("mnist-cnn", gpu=GPU, batch_size=4, calibration="none")
    assert e.to_dict()["workload"]["door"] == "trace"


@pytest.mark.parametrize("bad", ["traced", "", "CLOSED", None, 1])
def test_a_bad_door_is_refused_naming_the_doors(bad: object) -> None:
    with pytest.raises(OptionError, match="unknown door") as info:
        WorkloadOptions(door=bad)  # type: ignore[arg-type]
    assert "closed, trace" in (info.value.hint or "")
    with pytest.raises(EstimateError, match="unknown door"):
        estimate("gpt2", gpu=GPU, door=bad, calibration="none")  # type: ignore[arg-type]
    with pytest.raises(WorkloadError, match="unknown door"):
        from_preset("gpt2", door=bad)  # type: ignore[arg-type]


def test_the_cli_refuses_a_bad_door(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["estimate", "--model", "gpt2", "--gpu", GPU, "--door", "fast"])
    assert info.value.code == 2
    assert "invalid choice: 'fast'" in capsys.readouterr().err


def test_the_trace_door_refuses_what_only_the_closed_form_models() -> None:
    # checked before anything is imported or traced: no transformers needed
    for kw in ({"lora_rank": 16}, {"lora_rank": 16, "quantize_base": "nf4"}, {"attention": "eager"},
               {"mode": "infer", "optimizer": None}, {"mode": "infer", "optimizer": None, "gen_len": 64}):
        with pytest.raises(WorkloadError, match="trace door cannot price") as info:
            from_preset("llama-3-8b", door="trace", **kw)
        assert "door='closed'" in (info.value.hint or "")


def test_a_module_preset_takes_no_door() -> None:
    with pytest.raises(WorkloadError, match="applies to transformer presets"):
        from_preset("resnet50", door="trace")


def test_without_transformers_the_trace_door_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(WorkloadError, match=r"door='trace' builds .* transformers, which is not installed") as info:
        from_config(dict(SMALL_GPT2), door="trace", batch_size=2, seq_len=64)
    assert "gpu-advisor[hf]" in (info.value.hint or "")
    assert door_of(from_config(dict(SMALL_GPT2), batch_size=2, seq_len=64)) == "closed"  # the default still works


@needs_transformers
def test_the_trace_door_is_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    import advisor.workload.hf as hf

    w = load_workload(dict(SMALL_GPT2), door="trace", batch_size=2, seq_len=64)
    assert door_of(w) == "trace" and w.source == "config"
    assert any(a.startswith("door=trace") and "GPT2LMHeadModel" in a for a in w.assumptions)

    def no_trace(*_args: object, **_kw: object) -> None:
        raise AssertionError("traced again: the cache was not used")

    monkeypatch.setattr(hf, "trace_named_module", no_trace)
    import advisor.workload.tracecache as tracecache

    tracecache._MEMO.clear()  # from the file, not this process's memory
    again = load_workload(dict(SMALL_GPT2), door="trace", batch_size=2, seq_len=64)
    assert again.ops == w.ops and again.options.allocations == w.options.allocations


@needs_transformers
def test_estimate_json_says_the_trace_door_priced_it(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(SMALL_GPT2))
    assert main(["estimate", "--model", str(path), "--gpu", GPU, "--batch-size", "2", "--seq-len", "64",
                 "--door", "trace", "--calibration", "none", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["workload"]["door"] == "trace"


#: (preset, keywords, bound on the step time's difference): full-size points where the two doors are held to agree;
#: the step-time bounds are the spread measured at full size (docs/doors.md: -0.2..-4.9% on the decoders).
FULL_SIZE = [
    ("gpt2", {"batch_size": 8, "seq_len": 1024, "mode": "train", "precision": "amp-bf16"}, 0.06),
    ("llama-3-8b", {"batch_size": 8, "seq_len": 2048, "mode": "infer", "precision": "bf16", "optimizer": None,
                    "gen_len": 0}, 0.06),
]


@needs_transformers
@pytest.mark.parametrize(("model", "kw", "time_bound"), FULL_SIZE, ids=[f[0] for f in FULL_SIZE])
def test_both_doors_agree_at_full_size(model: str, kw: dict[str, object], time_bound: float) -> None:
    """Every class of the conformance harness within its bound, on the full-size module (not its 4-layer panel)."""
    conformance = benchmark_scripts.load("conformance")
    bounds, metrics = conformance.BOUNDS, conformance.metrics
    closed, traced = metrics(from_preset(model, **kw)), metrics(from_preset(model, door="trace", **kw))
    diffs = {k: closed[k] / traced[k] - 1 if traced[k] else closed[k] for k in (*bounds, "step_s")}
    assert all(abs(diffs[k]) <= bound for k, bound in bounds.items()), diffs
    assert abs(diffs["step_s"]) <= time_bound, diffs  # not a harness class: the spread measured at full size


def test_recommend_passes_the_door_on() -> None:
    from advisor import recommend

    with pytest.raises(AdvisorError, match="trace door cannot price"):
        recommend("llama-3-8b", door="trace", lora_rank=8, gpus=[GPU], calibration="none")
