"""Fuzz (issue 29): config dicts, spec records, CLI numbers and estimate/recommend calls give a clean
``AdvisorError`` or a finite, positive answer, never another exception and never an ``EstimateBug``.

Bounded to well under a minute on a 2-core machine (the ``ci`` profile: fixed examples, so CI is repeatable).  The
long run (docs/estimates.md, "Fuzzing") repeats the suite with fresh random examples, five times as many per run:
``GPU_ADVISOR_FUZZ=fuzz-long pytest -s tests/test_fuzz.py`` prints how many cases each run tried.
"""

from __future__ import annotations

import collections
import contextlib
import io
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from advisor import estimate, recommend
from advisor.catalog import SPEC_LIMITS, spec_from_mapping
from advisor.cli import main
from advisor.errors import AdvisorError
from advisor.estimator._checks import EstimateBug, bad_figures
from advisor.workload.arch import ARCH_LIMITS
from advisor.workload.options import COUNT_LIMITS
from advisor.workload.presets import PRESETS as ALL_PRESETS
from advisor.workload.presets import get_preset

#: examples per test = base x the profile's scale (ci: 1; fuzz-long: about ten minutes on a 2-core VM)
_SCALE = {"ci": 1, "fuzz-long": 5}
PROFILE = os.environ.get("GPU_ADVISOR_FUZZ", "ci")
if PROFILE not in _SCALE:
    raise ValueError(f"GPU_ADVISOR_FUZZ={PROFILE!r}: accepted {', '.join(_SCALE)}")
_COMMON = dict(deadline=None, database=None, derandomize=PROFILE == "ci",
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
GPU = "h100-sxm5-80gb"
CASES: collections.Counter[str] = collections.Counter()
_STARTED = time.monotonic()


def fuzz(base: int) -> Callable[[Any], Any]:
    """Hypothesis settings for a test that runs ``base`` examples in CI."""
    return settings(max_examples=base * _SCALE[PROFILE], **_COMMON)  # type: ignore[arg-type]


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    if PROFILE != "ci":
        print(f"\nfuzz cases run ({PROFILE}, {time.monotonic() - _STARTED:.0f} s): {sum(CASES.values()):,} "
              f"{dict(CASES)}")


# --- what is fuzzed ---------------------------------------------------------------------------------------

#: numbers of every kind a hand-edited file can hold: in range, at and past the bounds, huge, tiny, wrong types
_bounds = sorted({b for lo, hi in [*ARCH_LIMITS.values(), *COUNT_LIMITS.values()] for b in (lo, hi, hi + 1)})
NUMBERS = st.one_of(
    st.integers(-3, 300),
    st.sampled_from(_bounds),
    st.integers(-(2**70), 2**70),
    st.just(10**4999),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1.0, 0.5, 5e-324, 1e308, -0.0]),
    st.booleans(),
    st.text(max_size=6),
    st.sampled_from(["4096", "1e3", "", "nan"]),
    st.none(),
    st.lists(st.integers(0, 9), max_size=2),
)

#: one analytic preset of each model_type
PRESETS = tuple({p.config["model_type"]: name for name, p in sorted(ALL_PRESETS.items())
                 if p.kind == "transformer"}.values())
T5 = {"model_type": "t5", "d_model": 512, "d_kv": 64, "d_ff": 2048, "num_layers": 6, "num_heads": 8,
      "vocab_size": 32128, "feed_forward_proj": "relu", "num_decoder_layers": 6, "relative_attention_num_buckets": 32,
      "tie_word_embeddings": True, "dropout_rate": 0.1}
#: keys a builder reads in some family but that the presets leave out (so they are fuzzed too); not model_type,
#: whose other values lead to the transformers path (seconds per case: tests/test_validation.py covers it)
EXTRA_KEYS = ("head_dim", "n_inner", "num_key_value_heads", "num_local_experts", "num_experts_per_tok",
              "max_position_embeddings", "n_positions", "type_vocab_size", "attention_bias", "mlp_bias",
              "attention_dropout", "resid_pdrop", "hidden_dropout_prob", "architectures")


def _base_config(name: str) -> dict[str, Any]:
    return dict(T5) if name == "t5" else dict(get_preset(name).config)


@st.composite
def configs(draw: st.DrawFn) -> dict[str, Any]:
    cfg = _base_config(draw(st.sampled_from((*PRESETS, "t5"))))
    keys = sorted(cfg) + list(EXTRA_KEYS)
    for key in draw(st.lists(st.sampled_from(keys), min_size=1, max_size=3, unique=True)):
        kind = draw(st.integers(0, 3))  # a wrong-typed or absurd value, a bound, or a plausible size
        cfg[key] = draw(NUMBERS if kind == 0 else st.sampled_from(_bounds) if kind == 1 else st.integers(0, 8192))
    return cfg


def _finite_answer(doc: dict[str, Any]) -> None:
    json.dumps(doc, allow_nan=False)  # strict JSON: no NaN or infinity anywhere
    assert bad_figures({k: doc[k] for k in ("memory", "time", "flops_per_step")}) == []
    assert doc["time"]["step_s"] > 0 and doc["workload"]["params"] > 0


def _outcome(call: Callable[[], Any]) -> tuple[Any, str | None]:
    """(the answer, None) or (None, the refusal's message); an ``EstimateBug`` or any other exception propagates."""
    try:
        return call(), None
    except EstimateBug:
        raise
    except AdvisorError as exc:
        return None, exc.message


def _clean_or_finite(call: Callable[[], Any], kind: str) -> None:
    result, refusal = _outcome(call)
    if refusal is not None:
        CASES[f"{kind}: refused"] += 1
        assert refusal and "Traceback" not in refusal
        return
    CASES[f"{kind}: answered"] += 1
    if hasattr(result, "rows"):  # a Recommendation
        doc = result.to_dict()
        json.dumps(doc, allow_nan=False)
        for row in doc["rows"]:
            assert bad_figures(row) == [] and row["step_s"] > 0
        assert all("bug in gpu-advisor" not in r["reason"] for r in doc["rejected"]), doc["rejected"][:3]
    else:
        _finite_answer(result.to_dict())


# --- the tests -----------------------------------------------------------------------------------------

@fuzz(240)
@given(cfg=configs(), mode=st.sampled_from(["train", "infer"]))
def test_config_dicts(cfg: dict[str, Any], mode: str) -> None:
    _clean_or_finite(lambda: estimate(cfg, GPU, calibration=None, seq_len=64, mode=mode), "config")


_SPEC_BASE: dict[str, Any] = {
    "id": "fuzz-card", "name": "Fuzz Card", "vendor": "nvidia", "segment": "datacenter", "architecture": "Hopper",
    "release_year": 2024, "memory_gb": 80, "memory_type": "HBM3", "memory_bandwidth_gbs": 3350.0,
    "fp32_tflops": 67.0, "tf32_tflops": 494.7, "bf16_tflops": 989.4, "fp16_tflops": 989.4, "tdp_w": 700,
    "sm_count": 132, "boost_clock_mhz": 1980, "base_clock_mhz": 1590, "l2_cache_mb": 50, "price_usd": 30000,
    "price_kind": "list", "price_date": "2023-03", "source": "fuzz"}
_SPEC_INTS = {"release_year", "tensor_cores", "sm_count", "devices_per_package", "interconnect.pcie_gen",
              "interconnect.pcie_lanes"}
_SPEC_EDGES = sorted({b for lo, hi in SPEC_LIMITS.values() for b in (lo, hi, hi * 1.01, lo * 0.99)})


@st.composite
def spec_records(draw: st.DrawFn) -> dict[str, Any]:
    data = dict(_SPEC_BASE, interconnect={"pcie_gen": 5, "pcie_lanes": 16, "nvlink_gbs": 900})
    for key in draw(st.lists(st.sampled_from(sorted(SPEC_LIMITS)), min_size=1, max_size=3, unique=True)):
        low, high = SPEC_LIMITS[key]
        kind = draw(st.integers(0, 3))  # a wrong-typed or absurd value, an edge of a range, or a value inside it
        inside = st.integers(int(low), int(high)) if key in _SPEC_INTS else st.floats(low, high)
        value = draw(NUMBERS if kind == 0 else st.sampled_from(_SPEC_EDGES) if kind == 1 else inside)
        if key.startswith("interconnect."):
            data["interconnect"][key.split(".", 1)[1]] = value
        else:
            data[key] = value
    return data


@fuzz(200)
@given(data=spec_records(), model=st.sampled_from(["gpt2", "llama-3-8b"]),
       precision=st.sampled_from(["amp-bf16", "fp32", "fp16"]), num_gpus=st.sampled_from([1, 2]))
def test_spec_records(data: dict[str, Any], model: str, precision: str, num_gpus: int) -> None:
    try:
        spec = spec_from_mapping(data, where="fuzz-card.toml")
    except AdvisorError:
        CASES["spec refused"] += 1
        return
    _clean_or_finite(lambda: estimate(model, spec, calibration=None, precision=precision, num_gpus=num_gpus,
                                      seq_len=128), "spec")


_INT_TEXT = st.one_of(st.integers(-5, 70).map(str), st.integers(-(2**64), 2**64).map(str),
                      st.sampled_from(["0", "-1", "1e3", "4.5", "nan", "", "9" * 5000, "0x10", str(2**24 + 1)]))
_FLAGS = {"--batch-size": _INT_TEXT, "--seq-len": _INT_TEXT, "--num-gpus": _INT_TEXT, "--grad-accum": _INT_TEXT,
          "--lora-rank": _INT_TEXT, "--gen-len": _INT_TEXT, "--epochs": _INT_TEXT,
          "--dataset-samples": _INT_TEXT, "--total-tokens": _INT_TEXT, "--loader-samples-per-s": _INT_TEXT}


@fuzz(100)
@given(model=st.sampled_from(["gpt2", "llama-3-8b", "bert-base"]), mode=st.sampled_from(["train", "infer"]),
       flags=st.dictionaries(st.sampled_from(sorted(_FLAGS)), _INT_TEXT, min_size=1, max_size=3),
       command=st.sampled_from(["estimate", "estimate", "estimate", "recommend"]))
def test_cli_numbers(model: str, mode: str, flags: dict[str, str], command: str) -> None:
    argv = [command, "--model", model, "--mode", mode, "--calibration", "none", "--json"]
    argv += ["--gpu", GPU] if command == "estimate" else ["--max-gpus", "2", "--segment", "datacenter"]
    for flag, value in flags.items():
        argv += [f"{flag}={value}"]
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse: a value that is not a number at all
            code = exc.code
    out, err = stdout.getvalue(), stderr.getvalue()
    assert "Traceback" not in err and "bug in gpu-advisor" not in err
    CASES[f"cli {command}: {'answered' if code == 0 else 'refused'}"] += 1
    if code == 0 and command == "estimate":
        _finite_answer(json.loads(out))
    elif out:  # recommend's answer, or its partial answer (exit 1) when no card fits
        json.dumps(json.loads(out), allow_nan=False)
        assert command == "recommend" and code in (0, 1), (argv, code)
    else:
        assert code != 0 and err.startswith("error: "), (argv, err)


def _counts(name: str) -> st.SearchStrategy[Any]:
    """Mostly a valid count (so the estimator itself gets fuzzed), one draw in five a bad or edge value."""
    low, high = COUNT_LIMITS[name]
    valid = st.integers(max(low, 1), min(high, 64))
    bad = st.one_of(st.sampled_from([low - 1, high, high + 1]), NUMBERS)
    return st.integers(0, 4).flatmap(lambda i: bad if i == 0 else valid)


@fuzz(120)
@given(model=st.sampled_from(["gpt2", "llama-3-8b", "bert-base", "mixtral-8x7b"]),
       gpu=st.sampled_from(["h100-sxm5-80gb", "rtx-4090", "t4", "mi300x", "jetson-orin-nano-8gb", "gtx-1080"]),
       batch=_counts("batch_size"), seq=st.one_of(st.none(), _counts("seq_len")), num_gpus=_counts("num_gpus"),
       mode=st.sampled_from(["train", "infer"]), precision=st.sampled_from(["amp-bf16", "fp32", "fp16", "int8"]),
       lora=st.one_of(st.none(), _counts("lora_rank")), accum=st.one_of(st.just(1), _counts("grad_accum")),
       parallelism=st.sampled_from([None, "ddp", "zero3", "fsdp", "tp"]),
       runtime=st.sampled_from(["eager", "graph"]))
def test_estimate_api(model: str, gpu: str, batch: Any, seq: Any, num_gpus: Any, mode: str, precision: str,
                      lora: Any, accum: Any, parallelism: str | None, runtime: str) -> None:
    _clean_or_finite(lambda: estimate(model, gpu, calibration=None, batch_size=batch, seq_len=seq, num_gpus=num_gpus,
                                      mode=mode, precision=precision, lora_rank=lora, grad_accum=accum,
                                      parallelism=parallelism, runtime=runtime), "estimate")


@fuzz(8)
@given(model=st.sampled_from(["gpt2", "llama-3-8b"]), batch=_counts("batch_size"),
       seq=st.one_of(st.none(), _counts("seq_len")), mode=st.sampled_from(["train", "infer"]),
       max_gpus=st.sampled_from([1, 2, 1, 2, 0, 1025, True]),
       budget=st.integers(0, 3).flatmap(lambda i: st.floats(allow_nan=True, allow_infinity=True) if i == 0
                                        else st.none()),
       epochs=st.one_of(st.just(1), st.floats(allow_nan=True, allow_infinity=True)))
def test_recommend_api(model: str, batch: Any, seq: Any, mode: str, max_gpus: Any, budget: Any, epochs: Any) -> None:
    _clean_or_finite(lambda: recommend(model, calibration=None, batch_size=batch, seq_len=seq, mode=mode,
                                       max_gpus=max_gpus, budget_usd=budget, epochs=epochs, segment="datacenter"),
                     "recommend")


#: the figures a calibration file may hold (advisor.estimator.calibrate.figure_range), and a few it may not
CALIBRATION_KEYS = ("matmul_bf16", "matmul_fp32", "conv_bf16", "memory_bandwidth", "h2d_pinned",
                    "sustained_clock_fraction", "host_dispatch_s_per_op", "host_backward_s_per_op",
                    "launch_overhead_s", "kernel_gap_s", "conv_fp32", "unknown_figure", "")
CALIBRATION_VALUES = st.one_of(NUMBERS, st.floats(0, 2), st.floats(1e-8, 1e-3), st.dictionaries(
    st.text(max_size=3), st.integers(), max_size=2))


@fuzz(120)
@given(figures=st.dictionaries(st.sampled_from(CALIBRATION_KEYS), CALIBRATION_VALUES, max_size=5),
       wrap=st.sampled_from(["efficiencies", "bare", "probe-shaped"]))
def test_calibration_files(tmp_path_factory: pytest.TempPathFactory, figures: dict[str, Any], wrap: str) -> None:
    """A hand-edited --calibration file: refused with its figure named, or a finite answer; never a traceback."""
    doc: Any = ({"efficiencies": figures} if wrap == "efficiencies" else figures if wrap == "bare" else
                {"devices": [figures], "kernels": [figures]})
    path = tmp_path_factory.mktemp("calibration") / "probe.json"
    path.write_text(_dumps(doc))
    _clean_or_finite(lambda: estimate("gpt2", GPU, batch_size=4, seq_len=256, calibration=str(path)), "calibration")


def _dumps(doc: Any) -> str:
    """JSON as a hand-edited file may hold it: integers of any length (Python's str() limit lifted to write them)."""
    import sys

    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        return json.dumps(doc, default=str)
    finally:
        sys.set_int_max_str_digits(limit)


H100_PROBE = Path(__file__).parent / "data" / "gpu-runs" / "h100-2026-11-28" / "probe-full.json"
#: what a stored row's document can be after a crash, a hand edit or another program's write
STORED_DOCUMENTS = st.one_of(
    st.binary(max_size=40), st.text(max_size=40), st.sampled_from(["{", "[]", "null", "5", '{"devices": 3}']),
    st.dictionaries(st.sampled_from(["devices", "kernels", "efficiencies", "timestamp"]),
                    st.one_of(NUMBERS, st.lists(st.dictionaries(st.text(max_size=4), NUMBERS, max_size=3),
                                                max_size=2)), max_size=4).map(_dumps))


@fuzz(60)
@given(document=STORED_DOCUMENTS, column=st.sampled_from(["document", "versions", "timestamp"]))
def test_stored_rows(tmp_path_factory: pytest.TempPathFactory, document: Any, column: str) -> None:
    """A damaged row of the history store never breaks calibration='auto': skipped with a warning, or a clean error."""
    import sqlite3
    import warnings
    from unittest import mock

    from advisor.calibration import clear_calibration_cache
    from advisor.probing.results import ProbeResult
    from advisor.store import HistoryStore

    home = tmp_path_factory.mktemp("store")
    store = HistoryStore(home / "history.sqlite3")
    store.save_probe(ProbeResult.from_dict(json.loads(H100_PROBE.read_text())))  # a good, older row of the card
    row = store.save_probe(ProbeResult.from_dict(json.loads(H100_PROBE.read_text())))
    con = sqlite3.connect(store.path)
    with con:
        con.execute(f"UPDATE probe_runs SET {column} = ? WHERE id = ?", (document, row))
    con.close()
    clear_calibration_cache()
    with mock.patch.dict(os.environ, {"GPU_ADVISOR_HOME": str(home)}), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _clean_or_finite(lambda: estimate("gpt2", GPU, batch_size=4, seq_len=256, calibration="auto"), "stored row")
    clear_calibration_cache()


def test_the_suite_fuzzes_every_bound() -> None:
    """The number strategy reaches both sides of every arch and option bound (so a bound cannot go untested)."""
    for low, high in [*ARCH_LIMITS.values(), *COUNT_LIMITS.values()]:
        assert {low, high, high + 1} <= set(_bounds)
    assert all(math.isfinite(x) for x in _SPEC_EDGES)
