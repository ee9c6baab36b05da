"""The estimator's per-op cost model against NeuSight's kernel-level measurements (tests/data/neusight).

A committed sample of NeuSight's held-out test split (fp32 PyTorch 2.1 ops on eight NVIDIA cards) is priced by
``benchmarks/neusight_eval.py`` (the estimator's own per-op path, default efficiencies, no calibration) and the
median errors per op class are held to a ratchet at what the per-architecture kernel fits (the ``measured``
figures of the Pascal / Turing / Volta / GA100 profiles, fitted on the train split only) reach.  The full tables
are in docs/accuracy-kernels.md.
"""

from __future__ import annotations

import functools
import statistics
from pathlib import Path
from types import ModuleType

import pytest

from advisor.estimator.profiles import defaults_for, load_profiles
from tests import benchmark_scripts

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "tests" / "data" / "neusight"

#: Median |predicted / measured - 1| per op class over every card of the sample (ratchet: today's value + ~2 pt:
#: linear 14.2%, bmm 17.1%, elementwise 2.0%, layer norm 9.7%, softmax 12.8%; before the kernel fits, with bmm
#: priced by its smallest dimension: 22.9%, 30.5%, 9.9%, 34.0%, 19.6%).
RATCHET = {"linear": 0.16, "bmm": 0.19, "elementwise": 0.04, "layernorm": 0.12, "softmax": 0.14}
#: The same per card, op classes pooled: the train-split cards, where the fits act (today P100 12.5%, T4 9.5%,
#: V100 8.5%, A100-40GB 8.3%; before 20.5%, 19.0%, 28.1%, 14.8%), and the H100, which has no train data and keeps
#: its literature figures: only the mechanisms (SIMT tiles, batched waves) act there (today 12.9%, before 27.9%).
CARD_RATCHET = {"Tesla P100-PCIE-16GB": 0.14, "Tesla T4": 0.12, "Tesla V100-PCIE-32GB": 0.10,
                "NVIDIA A100-PCIE-40GB": 0.10, "NVIDIA H100 80GB HBM3": 0.15}


def _eval() -> ModuleType:
    return benchmark_scripts.load("neusight_eval")


@functools.cache
def _errors() -> dict[tuple[str, str], list[float]]:
    ne = _eval()
    rows, harness = ne.read_sample(SAMPLE)
    out: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        out.setdefault((r.device, r.op_class), []).append(ne.predict(r, harness) / r.latency_s - 1.0)
    return out


def test_sample_is_small_covers_every_card_and_class_and_names_its_source() -> None:
    ne = _eval()
    rows, harness = ne.read_sample(SAMPLE)
    assert 200 <= len(rows) <= 500
    assert {r.device for r in rows} == set(ne.DEVICES)
    assert {r.op_class for r in rows} == set(ne.CLASSES)
    assert all(r.split == "test" and r.latency_s > 0 for r in rows)
    assert set(harness) >= {(r.device, r.op_class) for r in rows}
    readme = (SAMPLE / "README.md").read_text()
    assert "MIT License" in readme and "sitar-lab/NeuSight" in readme and "test/" in readme


@pytest.mark.parametrize("op_class", sorted(RATCHET))
def test_median_error_per_op_class_holds_the_ratchet(op_class: str) -> None:
    errs = [abs(e) for (_, c), es in _errors().items() if c == op_class for e in es]
    assert len(errs) >= 60
    assert statistics.median(errs) <= RATCHET[op_class], f"{op_class}: {statistics.median(errs):.1%}"


@pytest.mark.parametrize("device", sorted(CARD_RATCHET))
def test_median_error_per_fitted_card_holds_the_ratchet(device: str) -> None:
    errs = [abs(e) for (d, _), es in _errors().items() if d == device for e in es]
    assert statistics.median(errs) <= CARD_RATCHET[device], f"{device}: {statistics.median(errs):.1%}"


def test_the_literature_figures_would_miss_the_ratchet(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ratchet is one the fits are needed for: with LayerNorm at the elementwise bandwidth (the pre-fit figure)
    the norm rows fail it."""
    ne = _eval()
    rows, harness = ne.read_sample(SAMPLE)
    norm = [r for r in rows if r.op_class == "layernorm"]
    fitted = ne.efficiency_for
    monkeypatch.setattr(ne, "efficiency_for", lambda spec: fitted(spec).replace(norm_memory=1.0))
    ne._RATES.clear()
    try:
        before = statistics.median(abs(ne.predict(r, harness) / r.latency_s - 1.0) for r in norm)
    finally:
        monkeypatch.undo()
        ne._RATES.clear()
    assert before > RATCHET["layernorm"] + 0.1


#: Figures fitted on NeuSight's train split, per profile (benchmarks/neusight_fit.py prints them).
KERNEL_FITS = {"pascal": {"memory": 0.75, "matmul_vector": 0.67, "norm_memory": 0.65},
               "turing": {"memory": 0.75, "matmul_vector": 0.59, "norm_memory": 0.79},
               "volta": {"memory": 0.92, "matmul_vector": 0.88, "norm_memory": 0.67},
               "ampere": {"memory": 0.85, "matmul_vector": 0.83, "norm_memory": 0.80}}


def test_kernel_fits_apply_to_their_architectures_only() -> None:
    profiles = load_profiles()
    for arch, fits in KERNEL_FITS.items():
        eff = defaults_for(arch)
        for name, value in fits.items():
            assert getattr(eff, name) == value
            assert profiles[arch].figures[name].evidence == "measured"
            assert "NeuSight" in profiles[arch].figures[name].source
    # no train data for these: their figures cite other evidence (Hopper's norm bandwidth: the H200 profile)
    for arch in ("hopper", "blackwell", "ada", "cdna3"):
        for name in ("memory", "matmul_vector", "norm_memory"):
            figure = profiles[arch].figures[name]
            assert "NeuSight" not in figure.source or figure.inherited_from, (arch, name)
    assert defaults_for("hopper").norm_memory == 0.36
    assert profiles["blackwell"].figures["norm_memory"].inherited_from == "hopper"
    assert defaults_for("Ampere").memory == KERNEL_FITS["ampere"]["memory"]


def test_a_calibrated_matmul_also_stands_for_cuda_core_gemms() -> None:
    eff = defaults_for("volta")
    assert eff.vector_matmul == KERNEL_FITS["volta"]["matmul_vector"] != eff.matmul
    probed = eff.replace(matmul=0.5)
    assert probed.vector_matmul == 0.5 and probed.norm_memory == eff.norm_memory
    assert eff.replace(matmul=0.5, matmul_vector=0.8).vector_matmul == 0.8


def test_norm_kernels_run_at_their_own_bandwidth_in_the_estimator() -> None:
    from advisor.catalog import get_gpu
    from advisor.estimator.ops import prepare_ops
    from advisor.estimator.time import card_rates, ops_time_detail
    from advisor.workload.base import OpCost

    spec = get_gpu("a100-pcie-40gb")
    eff = defaults_for("ampere")
    peak = spec.fp32_tflops * 1e12
    rates = card_rates(spec, "fp32", eff, peak, peak)
    nbytes = 1e9
    norm, add = (prepare_ops([OpCost(k, k, "forward", 1e6, nbytes)]) for k in ("norm", "elementwise"))
    t_norm = ops_time_detail(norm, rates).phases[0] - rates.launch_s
    t_add = ops_time_detail(add, rates).phases[0] - rates.launch_s
    assert t_add == pytest.approx(nbytes / (spec.memory_bandwidth_bytes_s * eff.memory))
    assert t_norm == pytest.approx(t_add / eff.norm_memory)


def test_simt_gemms_run_small_tiles_side_by_side_and_ignore_alignment() -> None:
    from advisor.estimator.gemm import SIMT_SATURATION_WARPS, gemm_seconds

    rate, sms = 19.5e12 * 0.83, 108
    # a 4096^3 GEMM runs at the card's rate on either tile set (the reference shape), at any lane count
    for simt, lanes in ((False, 64.0), (True, 64.0), (True, 128.0)):
        assert gemm_seconds(4096, 4096, 4096, rate_flops=rate, sms=sms, simt=simt, lanes=lanes) == pytest.approx(
            2 * 4096**3 / rate)
    # one 32x32 output: one tile on one SM either way, but the SIMT tile carries a far smaller fixed K cost
    small = {simt: gemm_seconds(32, 32, 64, rate_flops=rate, sms=sms, simt=simt) for simt in (False, True)}
    assert small[True] < small[False] / 2
    # an output of one thin tile per SM (8 warps: saturated) and one of twice that: twice the time
    assert SIMT_SATURATION_WARPS == 6
    one = gemm_seconds(32 * sms, 128, 256, rate_flops=rate, sms=sms, simt=True)
    two = gemm_seconds(32 * sms, 256, 256, rate_flops=rate, sms=sms, simt=True)
    assert two == pytest.approx(2 * one, rel=0.05)


def test_small_sgemm_on_a_wide_card_runs_thin_tiles_or_idle_sms(monkeypatch: pytest.MonkeyPatch) -> None:
    # the shared H100 probe: fp32 matmul 37.5 TFLOP/s at 1024^3, 50.9 at 4096^3 (0.736); the SIMT model: 0.80
    # (thin 32x128 tiles, shared-memory bound on 128 lanes an SM, or 64 128x128 tiles on 132 SMs); 2048^3 stays
    # within 3% of the reference rate (measured 0.971)
    from advisor.catalog import get_gpu
    from advisor.estimator.gemm import fp32_lanes, gemm_seconds, simt_tile_rate

    spec = get_gpu("h100-sxm5-80gb")
    lanes, sms = fp32_lanes(spec), spec.sm_count or 0
    assert lanes == pytest.approx(128, rel=0.01)
    assert fp32_lanes(get_gpu("a100-pcie-40gb")) == pytest.approx(64, rel=0.01)

    def rate(n: int) -> float:
        return 2.0 * n**3 / gemm_seconds(n, n, n, rate_flops=1.0, sms=sms, simt=True, lanes=lanes)

    assert 0.74 <= rate(1024) / rate(4096) <= 0.84
    assert rate(2048) / rate(4096) == pytest.approx(0.971, abs=0.03)
    # both halves of the mechanism: with every SM saturated by any tile, or every tile at one rate, 1024^3 would
    # run at the reference rate (the model before: 0.99)
    from advisor.estimator import gemm
    for name, value in (("SIMT_SATURATION_WARPS", 1e-9), ("SIMT_LDS_EXPOSED", 1e-9)):
        with monkeypatch.context() as m:
            m.setattr(gemm, name, value)
            assert rate(1024) / rate(4096) > 0.84, name
    # the same GEMM on a 64-lane SM keeps more of its rate (its thin tiles are not shared-memory bound)
    assert simt_tile_rate(16, 64.0) / simt_tile_rate(64, 64.0) > simt_tile_rate(16, 128.0) / simt_tile_rate(64, 128.0)
    # NeuSight's V100 / A100 kernels: 8x8 thread tiles at 0.88-0.92 of the peak, 4x4 ones at 0.76-0.80
    assert simt_tile_rate(64, 64.0) == pytest.approx(0.89, abs=0.03)
    assert simt_tile_rate(16, 64.0) == pytest.approx(0.78, abs=0.02)


def test_split_k_only_for_deep_gemms(monkeypatch: pytest.MonkeyPatch) -> None:
    from advisor.estimator import gemm

    rate, sms = 14e12, 80

    def ratio() -> float:  # 8x the K on a 256x256 output (16 thin tiles on 80 SMs)
        return (gemm.gemm_seconds(256, 256, 4096, rate_flops=rate, sms=sms, simt=True)
                / gemm.gemm_seconds(256, 256, 512, rate_flops=rate, sms=sms, simt=True))

    assert ratio() < 3  # the deep one is split across the idle SMs; 512 = 2 sqrt(256 x 256) is not deep
    monkeypatch.setattr(gemm, "SPLIT_K_DEPTH", 1e9)
    assert ratio() == pytest.approx(8, rel=0.05)


def test_batched_gemm_tiles_share_the_waves() -> None:
    from advisor.estimator.gemm import aligned, common_alignment, gemm_flops, gemm_seconds, shape_seconds

    rate, sms = 19.5e12, 108
    one = gemm_seconds(64, 64, 64, rate_flops=rate, sms=sms, simt=True)
    batched = gemm_seconds(64, 64, 64, rate_flops=rate, sms=sms, simt=True, batch=108)
    assert batched < 3 * one  # 108 small products share one kernel's grid on 108 SMs: not 108 kernels' time
    assert shape_seconds((64, 64, 64, 108), rate_flops=rate, sms=sms, simt=True) == batched
    assert gemm_flops((64, 64, 64, 108)) == 108 * gemm_flops((64, 64, 64))
    # the batch is not a GEMM dimension for alignment
    assert aligned([(64, 64, 64, 3)], 8) and common_alignment([(64, 64, 64, 3)], 8) == 8


def test_bmm_priced_with_its_batch_by_the_estimator() -> None:
    from advisor.catalog import get_gpu
    from advisor.estimator.ops import prepare_ops
    from advisor.estimator.time import card_rates, ops_time_detail
    from advisor.workload.base import OpCost

    spec = get_gpu("v100-pcie-32gb")
    peak = spec.fp32_tflops * 1e12
    rates = card_rates(spec, "fp32", defaults_for("volta"), peak, peak)
    flops = 2.0 * 96 * 64 * 64 * 64
    batched = prepare_ops([OpCost("bmm", "matmul", "forward", flops, 1e3, gemms=((64, 64, 64, 96),))])
    looped = prepare_ops([OpCost("bmm", "matmul", "forward", flops, 1e3, gemms=((64, 64, 64),))])
    assert ops_time_detail(batched, rates).phases[0] < ops_time_detail(looped, rates).phases[0] / 10


def test_bad_data_folder_is_an_error_with_a_hint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        _eval().main(["--data", str(tmp_path)])
    assert "error:" in str(exc.value) and "hint:" in str(exc.value)
    assert _eval().main(["--data", str(tmp_path / "absent")]) == 2
    assert "error:" in capsys.readouterr().err


def test_an_estimate_with_cuda_core_gemms_names_the_simt_model() -> None:
    torch = pytest.importorskip("torch")
    from advisor import estimate
    from advisor.estimator.gemm import SIMT_SOURCE

    m = torch.nn.Sequential(torch.nn.Linear(512, 1000), torch.nn.ReLU(), torch.nn.Linear(1000, 10))
    kw = dict(batch_size=64, calibration=None, example_inputs=torch.randn(64, 512))
    assert SIMT_SOURCE in estimate(m, "v100-pcie-32gb", precision="fp32", **kw).assumptions
    assert SIMT_SOURCE not in estimate(m, "v100-pcie-32gb", precision="amp-fp16", **kw).assumptions
