"""``validate --profile``: measured time per op class beside the estimate's (advisor.profiling)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from advisor import profiling
from advisor.estimator.ops import GROUPS

PROFILE = Path(__file__).parent / "data" / "gpu-runs" / "h200-2026-11-28" / "profile-ops.json"


@pytest.mark.parametrize(("name", "group"), [
    ("nvjet_sm90_tst_256x128_64x4_1x2_h_bz_coopA_NNT", "gemm"),
    ("void cutlass::Kernel2<cutlass_75_tensorop_bf16_s1688gemm_bf16_128x128_tn_align1>", "gemm"),
    ("cudnn_generated_fort_native_sdpa_sm90_flash_bprop_wgmma_f16_knob_26_64x64x64", "attention"),
    ("sm90_xmma_fprop_implicit_gemm_f16f16_f16f32_f32_nhwckrsc_nhwc_tilesize128x128x64", "conv"),
    ("void cudnn::engines_precompiled::nchwToNhwcKernel<__half, __half, float, false, true>", "conv"),
    ("void cudnn::bn_bw_1C11_kernel_new<__half, float, float2, 128, true, 1>", "norm"),
    ("void at::native::(anonymous namespace)::vectorized_layer_norm_kernel<float, float, false>", "norm"),
    ("void at::native::(anonymous namespace)::multi_tensor_apply_kernel<TensorListMetadata<1>>", "optimizer"),
    ("void RNN_blockPersist_fp_LSTM<float, float, float, 128>", "gemm"),
    ("void at::native::vectorized_elementwise_kernel<8, at::native::CUDAFunctor_add<c10::Half>>", "elementwise"),
    ("ncclDevKernel_AllReduce_Sum_bf16_RING_LL", "communication"),
])
def test_kernel_names_fall_in_the_estimators_classes(name: str, group: str) -> None:
    assert profiling.kernel_class(name) == group
    assert group in GROUPS


def test_every_top_kernel_of_the_h200_profile_has_a_class() -> None:
    doc = json.loads(PROFILE.read_text())
    seen = {profiling.kernel_class(k["name"]) for c in doc["cases"] for k in c["profile"]["top_kernels"]}
    assert seen <= set(GROUPS) and {"gemm", "attention", "conv", "norm", "elementwise"} <= seen


@pytest.mark.parametrize(("name", "group"), [("aten::addmm", "gemm"), ("aten::convolution", "conv"),
                                              ("aten::native_layer_norm", "norm"), ("aten::_foreach_add_", "optimizer"),
                                              ("aten::_scaled_dot_product_flash_attention_for_cpu", "attention"),
                                              ("aten::add_", "elementwise")])
def test_cpu_ops_fall_in_the_estimators_classes(name: str, group: str) -> None:
    assert profiling.op_class(name) == group


def test_profile_steps_on_the_cpu_splits_a_real_step() -> None:
    import torch

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Flatten(), torch.nn.Linear(8 * 14 * 14, 10))
    x = torch.randn(4, 3, 16, 16)

    def step() -> None:
        model(x).sum().backward()

    out = profiling.profile_steps(step, cuda=False, synchronize=lambda: None, steps=2)
    assert out["aten_ops_per_step"] > 5 and out["gpu_kernel_s_per_step"] == 0
    assert out["by_class_s"].get("conv", 0) > 0 and out["by_class_s"].get("gemm", 0) > 0


def test_validate_profile_rows_carry_measured_and_predicted_classes(tmp_path: Path, monkeypatch, capsys) -> None:
    from advisor.cli import main

    monkeypatch.setenv("GPU_ADVISOR_HOME", str(tmp_path))
    rc = main(["validate", "--models", "mnist-cnn", "--device", "cpu", "--warmup", "0", "--iters", "1",
               "--profile", "1", "--no-save", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0
    row = doc["rows"][0]
    assert row["profile"]["by_class_s"]["conv"] > 0 and "conv" in row["profile"]["predicted_by_class_s"]
    # the replay of a profiled run keeps its profile
    from advisor import validate as v

    again = v.replay(doc).to_dict()["rows"][0]
    assert again["profile"]["by_class_s"] == row["profile"]["by_class_s"]


def test_profile_must_be_positive(capsys) -> None:
    from advisor.cli import main

    assert main(["validate", "--profile", "-1"]) != 0
    assert "--profile" in capsys.readouterr().err


def test_profile_script_runs_unprofiled_cases_first_and_keeps_each_case(tmp_path, monkeypatch) -> None:
    """benchmarks/profile_ops.py on a CPU (its dry run): cases an earlier profile lacks go first, and the file is
    rewritten after every case, so a GPU lease that ends mid-run keeps what was measured."""
    import json

    from advisor import validate as v
    from tests import benchmark_scripts

    script = benchmark_scripts.load("profile_ops")
    cases = v.default_cases(["mnist-cnn"], quick=True, cuda=False)
    assert len(cases) == 2
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps({"cases": [{"model": cases[0].model, "case": cases[0].label()}]}))
    out = tmp_path / "profile.json"
    writes = []
    real_write = type(out).write_text

    def spy(self, text, *a, **kw):  # type: ignore[no-untyped-def]
        writes.append(len(json.loads(text)["cases"]))
        return real_write(self, text, *a, **kw)

    monkeypatch.setattr(type(out), "write_text", spy)
    assert script.main(["--out", str(out), "--models", "mnist-cnn", "--steps", "1", "--iters", "1",
                        "--new-first", str(earlier)]) == 0
    ran = [(c["model"], c["case"]) for c in json.loads(out.read_text())["cases"]]
    assert ran == [(cases[1].model, cases[1].label()), (cases[0].model, cases[0].label())]
    assert writes == [1, 2]


def test_captured_output_holds_what_the_process_writes_to_its_descriptors(capfd) -> None:
    import os

    with profiling.captured_output() as lines:
        os.write(2, b"ERROR: gpuGetDeviceCount failed with code 35\n")  # what Kineto writes, from C++
        os.write(1, b"profiler_start\n")
    print("after")
    out, err = capfd.readouterr()
    assert lines == ["ERROR: gpuGetDeviceCount failed with code 35", "profiler_start"]
    assert out == "after\n" and err == ""


def test_profile_steps_keeps_the_profilers_lines_out_of_the_output(capfd) -> None:
    import os

    import torch

    model = torch.nn.Linear(16, 4)
    x = torch.randn(2, 16)

    def step() -> None:
        os.write(2, b"noise from inside the profiled region\n")
        model(x).sum().backward()

    out = profiling.profile_steps(step, cuda=False, synchronize=lambda: None, steps=1)
    captured = capfd.readouterr()
    assert "noise from inside the profiled region" in out["profiler_log"]
    assert captured.err == "" and captured.out == ""


def test_validate_profile_leaves_the_results_as_they_are(tmp_path: Path, monkeypatch, capfd) -> None:
    """Issue 26 item 10: --profile printed Kineto's lines into the output; its rows are those of a run without it."""
    from advisor.cli import main

    monkeypatch.setenv("GPU_ADVISOR_HOME", str(tmp_path))
    args = ["validate", "--models", "mnist-cnn", "--device", "cpu", "--warmup", "0", "--iters", "1", "--no-save",
            "--json"]
    assert main(args) == 0
    plain = json.loads(capfd.readouterr().out)
    assert main([*args, "--profile", "1"]) == 0
    out, err = capfd.readouterr()
    profiled = json.loads(out)
    assert [line for line in err.splitlines() if not line.startswith("[")] == []  # the progress lines only
    for a, b in zip(plain["rows"], profiled["rows"], strict=True):
        assert {k for k in b if k != "profile"} == set(a) and "profile" in b and "profile" not in a
        # (the CPU's rates, and so the predicted times, are measured again by each run)
        assert (a["config"], a["memory"]["predicted_bytes"]) == (b["config"], b["memory"]["predicted_bytes"])
        assert set(a["time"]) == set(b["time"]) and isinstance(b["profile"]["profiler_log"], list)


def test_the_profilers_memory_is_not_the_measured_peak(monkeypatch) -> None:
    """The heap peak is read before the profiled steps: memory the profiler keeps is not the model's."""
    from advisor import validate as v
    from tests.test_validate import CPU, _fixed_predictor, _mlp_builder

    if v.heap_in_use_bytes() is None:
        pytest.skip("no glibc mallinfo2 here")
    import torch

    kept = []

    def hungry_profiler(step, **kwargs):  # a profiler whose buffers outlive its steps
        kept.append(torch.ones(64 * 2**20 // 4))
        step()
        return {"by_class_s": {}}

    monkeypatch.setattr(profiling, "profile_steps", hungry_profiler)
    report = v.run_validation([v.Case("mlp", "infer", 4, "fp32")], CPU, build=_mlp_builder(64),
                              predict=_fixed_predictor(1e6, 1e-4), warmup=1, iters=1, profile=1)
    m = report.rows[0].measurement
    assert kept and m.profile == {"by_class_s": {}} and m.peak_bytes < 16 * 2**20
