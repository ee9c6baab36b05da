"""``python -m advisor estimate``: text, --json, errors, shared workload flags, no torch on the analytic path."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from advisor.api import estimate
from advisor.cli import main
from advisor.commands.estimate import add_workload_args, workload_kwargs

ROOT = Path(__file__).resolve().parent.parent
BASE = ["estimate", "--model", "gpt2", "--gpu", "h100-sxm5-80gb", "--batch-size", "4", "--seq-len", "512",
        "--calibration", "none"]


def test_json_is_exactly_the_api_to_dict(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*BASE, "--json"]) == 0
    out = capsys.readouterr().out
    doc = json.loads(out)
    api = estimate("gpt2", "h100-sxm5-80gb", batch_size=4, seq_len=512, calibration=None).to_dict()
    # the API's to_dict, plus what would make it fit (nothing to change here: it fits)
    assert doc.pop("fit_options") == {"fits": True, "why": "", "options": [], "smallest": None}
    assert doc == json.loads(json.dumps(api))
    assert doc["gpu"]["id"] == "h100-sxm5-80gb" and doc["workload"]["batch_size"] == 4
    assert doc["memory"]["fits"] is True and doc["time"]["bound"] in ("compute", "memory")


def test_text_output_has_breakdown_verdict_time_and_assumptions(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(BASE) == 0
    out = capsys.readouterr().out
    for word in ("memory per GPU", "weights", "optimizer", "activations", "allocator reserve", "GiB", "verdict: fits",
                 "largest global batch", "step", "samples/s", "tokens/s", "assumptions", "MFU"):
        assert word in out, word


def test_does_not_fit_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["estimate", "--model", "llama-2-70b", "--gpu", "rtx-4090", "--calibration", "none",
                 "--seq-len", "1024"]) == 0
    assert "does not fit" in capsys.readouterr().out


def test_multi_gpu_flags_reach_the_estimate(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["estimate", "--model", "llama-2-70b", "--gpu", "a100-sxm4-80gb", "--num-gpus", "2",
                 "--parallelism", "tp", "--mode", "infer", "--precision", "fp16", "--seq-len", "2048",
                 "--calibration", "none", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["num_gpus"] == 2 and doc["parallelism"] == "tp" and doc["memory"]["fits"] is True


@pytest.mark.parametrize(("argv", "needle"), [
    (["--model", "gpt2", "--gpu", "no-such-card"], "unknown GPU"),
    (["--model", "no-such-model", "--gpu", "h100-sxm5-80gb"], "no-such-model"),
    (["--model", "gpt2", "--gpu", "v100-sxm2-32gb", "--precision", "bf16"], "does not support"),
    (["--model", "gpt2", "--gpu", "h100-sxm5-80gb", "--calibration", "/no/such/probe.json"], "cannot read"),
])
def test_bad_input_is_error_and_exit_2(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["estimate", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error:") and needle in captured.err


def test_runtime_flag_reaches_the_estimate_and_a_bad_one_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["estimate", "--model", "llama-2-7b", "--gpu", "a100-sxm4-80gb", "--mode", "infer", "--precision", "fp16",
            "--seq-len", "128", "--gen-len", "16", "--calibration", "none", "--json"]
    assert main([*argv, "--runtime", "graph"]) == 0
    graph = json.loads(capsys.readouterr().out)["time"]
    assert main(argv) == 0
    eager = json.loads(capsys.readouterr().out)["time"]
    assert graph["runtime"] == "graph" and eager["runtime"] == "eager" and eager["limiter"] == "host"
    assert graph["decode_step_s"] < eager["decode_step_s"]
    assert main(argv[:-1]) == 0  # the text view names the limit and the way out
    text = capsys.readouterr().out
    assert "host dispatch (eager)" in text and "--runtime graph" in text
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--runtime", "jit"])
    assert exc.value.code == 2 and "invalid choice: 'jit'" in capsys.readouterr().err


def test_negative_batch_is_rejected_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["estimate", "--model", "gpt2", "--gpu", "h100-sxm5-80gb", "--batch-size", "-2"])
    assert exc.value.code == 2
    assert "must be > 0" in capsys.readouterr().err


def test_config_json_path_as_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = {"model_type": "llama", "hidden_size": 1024, "num_hidden_layers": 4, "num_attention_heads": 8,
           "num_key_value_heads": 8, "intermediate_size": 2816, "vocab_size": 32000,
           "max_position_embeddings": 4096}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    assert main(["estimate", "--model", str(path), "--gpu", "rtx-4090", "--seq-len", "256",
                 "--calibration", "none", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert 50e6 < doc["workload"]["params"] < 200e6


def test_shared_workload_flags_round_trip() -> None:
    parser = argparse.ArgumentParser()
    add_workload_args(parser)
    args = parser.parse_args(["--model", "llama-3-8b", "--batch-size", "8", "--lora-rank", "16", "--quantize-base",
                              "nf4", "--grad-accum", "4", "--calibration", "none", "--mode", "train"])
    kw = workload_kwargs(args)
    assert kw["batch_size"] == 8 and kw["lora_rank"] == 16 and kw["quantize_base"] == "nf4"
    assert kw["grad_accum"] == 4 and kw["calibration"] is None and "model" not in kw
    # every key is an estimate() keyword
    e = estimate(args.model, "h100-sxm5-80gb", **{**kw, "seq_len": 256})
    assert e.workload.trainable_params < e.workload.params / 50


def test_analytic_estimate_does_not_import_torch() -> None:
    code = ("import sys, json\n"
            "from advisor.cli import main\n"
            "rc = main(['estimate', '--model', 'llama-3-70b', '--gpu', 'h100-sxm5-80gb', '--num-gpus', '8', "
            "'--parallelism', 'zero3', '--json'])\n"
            "assert rc == 0\n"
            "heavy = [m for m in ('torch', 'pandas', 'streamlit', 'pynvml') if m in sys.modules]\n"
            "print(json.dumps(heavy), file=sys.stderr)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stderr.strip().splitlines()[-1]) == []
    assert json.loads(out.stdout)["num_gpus"] == 8


ISSUE_16_LORA = ["estimate", "--model", "llama-3-8b", "--gpu", "RTX 4090", "--batch-size", "1", "--seq-len", "2048",
                 "--lora-rank", "16", "--calibration", "none"]


def test_does_not_fit_says_what_does_not_fit_and_what_would(capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 16 item 3: the model states fit; one sample's activations on top of them do not."""
    assert main(ISSUE_16_LORA) == 0
    out = capsys.readouterr().out
    assert "model states alone do not fit" not in out
    assert "the model states (15.2 GiB) fit, but not with one sample's activations" in " ".join(out.split())
    assert "what would make it fit" in out and "--gradient-checkpointing" in out and "yes" in out
    assert main([*ISSUE_16_LORA, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    fo = doc["fit_options"]
    assert fo["fits"] is False and doc["memory"]["fits"] is False
    assert any(o["fits"] for o in fo["options"])
    assert {o["how"] for o in fo["options"]} >= {"--gradient-checkpointing", "--lora-rank 16 --quantize-base nf4",
                                                  "--num-gpus 2 --parallelism zero3"}


def test_fit_advice_searches_the_smallest_combination_that_fits() -> None:
    """Issue 26 item 3: LoRA on a 4090 at batch 4 fits with checkpointing and a smaller micro-batch, neither alone."""
    from advisor.advice import fit_options

    kw = dict(batch_size=4, seq_len=2048, lora_rank=16, calibration=None, max_gpus=1)
    adv = fit_options("llama-3-8b", "rtx-4090", **kw)
    best = adv.smallest
    # two levers: checkpointing, or (since a frozen base's linears save no input, as PEFT's LoRA runs) QLoRA
    assert best is not None and set(best.levers) in ({"checkpointing", "micro-batch"}, {"QLoRA", "micro-batch"})
    assert best.num_gpus == 1 and best.kwargs["batch_size"] * best.kwargs["grad_accum"] == 4
    assert best.memory_per_gpu_bytes <= best.usable_per_gpu_bytes and best.step_s > 0
    assert best.price_usd == 1599 and best.cloud_usd_per_hour is not None  # the cards' price beside the change
    alone = next(o for o in adv.options if o.levers == ("checkpointing",))
    assert not alone.fits  # each change alone is listed with what it gives
    # minimal: no listed combination contains a smaller one that fits
    for o in adv.fitting:
        assert not any(p is not o and set(p.levers) < set(o.levers) for p in adv.fitting)


def test_nothing_fits_comes_with_the_smallest_setup_that_would() -> None:
    """Issue 26 item 3: a 70B full fine-tune on one 24 GB card: sized setups beyond --max-gpus, never a bare no."""
    from advisor.advice import fit_options

    adv = fit_options("llama-3-70b", "rtx-4090", batch_size=4, seq_len=2048, gradient_checkpointing=True,
                      calibration=None, max_gpus=1)
    assert not adv.fits and adv.fitting
    full = next(o for o in adv.fitting if o.beyond_max_gpus and "QLoRA" not in o.levers)
    assert full.num_gpus > 8 and full.kwargs["parallelism"] == "zero3" and full.memory_per_gpu_bytes < 24e9
    assert all(o.memory_per_gpu_bytes <= o.usable_per_gpu_bytes for o in adv.fitting)
    assert main(["estimate", "--model", "llama-3-70b", "--gpu", "rtx-4090", "--batch-size", "4", "--seq-len", "2048",
                 "--gradient-checkpointing", "--calibration", "none"]) == 0


def test_fit_options_are_the_estimators_own_numbers() -> None:
    from advisor.advice import fit_options

    kw = dict(batch_size=1, seq_len=2048, lora_rank=16, calibration=None)
    adv = fit_options("llama-3-8b", "rtx-4090", **kw)
    assert not adv.fits and adv.fitting
    for o in adv.options:  # each row is estimate() with the row's kwargs
        k = dict(o.kwargs)
        gpu = k.pop("gpu", "rtx-4090")
        e = estimate("llama-3-8b", gpu, **{**kw, **k})
        assert e.memory.total_bytes == pytest.approx(o.memory_per_gpu_bytes) and e.memory.fits == o.fits
        assert e.time.step_s == pytest.approx(o.step_s)
    assert [o.fits for o in adv.options] == sorted((o.fits for o in adv.options), reverse=True)
    big = fit_options("llama-3-8b", "rtx-4090", batch_size=8, seq_len=2048, calibration=None)
    assert "the model states alone" in big.why  # full fine-tune: 16 B/param of states exceed 24 GB
    micro = fit_options("gpt2", "rtx-4090", batch_size=64, seq_len=1024, calibration=None)
    acc = next(o for o in micro.options if o.change.startswith("smaller micro-batch"))
    assert acc.fits and acc.kwargs["batch_size"] * acc.kwargs["grad_accum"] >= 64
    # activations, not model states, are the problem: splitting the batch (ddp) is offered, and sharding is not
    # offered at or beyond the card count where ddp already fits
    ddp = next(o for o in micro.options if o.change.startswith("data parallel") and o.fits)
    assert ddp.kwargs["parallelism"] == "ddp"
    assert not any(o.kwargs.get("parallelism") == "zero3" and o.num_gpus >= ddp.num_gpus for o in micro.options)
    # the smallest change first (software before more cards), then the fastest
    order = [(len(o.levers) + sum(lv == "bigger card" or lv[0].isdigit() for lv in o.levers),
              -o.effective_samples_per_s) for o in micro.fitting]
    assert order == sorted(order) and micro.smallest is micro.fitting[0]
    assert fit_options("gpt2", "h100-sxm5-80gb", batch_size=4, seq_len=512, calibration=None).options == ()
    frame = adv.to_frame()
    assert len(frame) == len(adv.options) and bool(frame["fits"].iloc[0])


@pytest.mark.parametrize(("model", "limit"), [("llama-3-8b", 8192), ("mistral-7b", 32768), ("qwen2.5-7b", 131072),
                                              ("llama-2-7b", 4096), ("gpt-j-6b", 2048)])
def test_seq_len_past_the_trained_context_is_a_warning_for_every_family(
        model: str, limit: int, capsys: pytest.CaptureFixture[str]) -> None:
    e = estimate(model, "h100-sxm5-80gb", seq_len=limit + 1, calibration=None, num_gpus=2, batch_size=2)
    warnings = [a for a in e.assumptions if a.startswith("warning:")]
    assert len(warnings) == 1 and f"({limit:,})" in warnings[0]
    inside = estimate(model, "h100-sxm5-80gb", seq_len=limit, calibration=None, num_gpus=2, batch_size=2)
    assert not any(a.startswith("warning:") for a in inside.assumptions)
    # the CLI says it on stderr as well
    assert main(["estimate", "--model", model, "--gpu", "h100-sxm5-80gb", "--seq-len", str(limit + 1),
                 "--calibration", "none", "--json"]) == 0
    assert "exceeds" in capsys.readouterr().err


def test_generated_tokens_count_towards_the_context() -> None:
    e = estimate("llama-2-7b", "h100-sxm5-80gb", mode="infer", precision="bf16", seq_len=4000, gen_len=200,
                 calibration=None)
    assert any("4,200 tokens exceeds" in a for a in e.assumptions)


def test_learned_position_tables_still_refuse() -> None:
    from advisor.errors import WorkloadError

    with pytest.raises(WorkloadError, match="learned position table"):
        estimate("bert-base", "h100-sxm5-80gb", seq_len=513, calibration=None)


def test_qlora_costs_the_dequantization_of_its_base() -> None:
    """Issue 16 item 4: nf4 weights are dequantized to a 16-bit copy per matmul, forward and backward."""
    from advisor.precision import NF4_BYTES_PER_WEIGHT
    from advisor.workload import from_preset
    from advisor.workload.qlora import dequant_bytes_per_weight

    kw = dict(batch_size=1, seq_len=512, lora_rank=16, calibration=None)
    lora = estimate("llama-3-8b", "rtx-4090", **kw)
    qlora = estimate("llama-3-8b", "rtx-4090", quantize_base="nf4", **kw)
    assert qlora.time.step_s > lora.time.step_s * 1.05  # a memory-bound extra pass over the base, twice
    assert qlora.memory.breakdown_bytes["weights"] < lora.memory.breakdown_bytes["weights"]
    assert any("dequant" in a and "backward" in a for a in qlora.assumptions)
    w = from_preset("llama-3-8b", batch_size=1, seq_len=512, lora_rank=16, quantize_base="nf4")
    dq = [op for op in w.ops if op.name.endswith(".dequant")]
    assert {op.phase for op in dq} == {"forward"} and any(op.name.endswith(".dequant.grad") for op in w.ops)
    weights = sum(op.strided_elements for op in dq)  # every weight an index-bound element (advisor.workload.qlora)
    assert weights == pytest.approx(w.options.quantized_params, rel=1e-6)
    # each reads its nf4 weight (advisor.precision's one figure, double quantization included), writes 16 bits
    assert sum(op.bytes for op in dq) == pytest.approx(weights * dequant_bytes_per_weight(), rel=1e-6)
    assert dequant_bytes_per_weight() > 2.0 + NF4_BYTES_PER_WEIGHT  # and the absmax kernels' fp32 constants
    # the LM head and embeddings stay 16-bit: their traffic is the same as without quantization
    plain = from_preset("llama-3-8b", batch_size=1, seq_len=512, lora_rank=16)
    head = {op.name: op.bytes for op in plain.ops if op.name in ("lm_head", "embedding")}
    assert head == {op.name: op.bytes for op in w.ops if op.name in ("lm_head", "embedding")}


def test_the_workload_flags_accept_exactly_the_library_s_names() -> None:
    from advisor.estimator.parallel import STRATEGIES
    from advisor.estimator.time import RUNTIMES
    from advisor.workload.options import MODES, OPTIMIZERS, PRECISIONS

    parser = argparse.ArgumentParser()
    add_workload_args(parser)
    choices = {a.dest: tuple(a.choices) for a in parser._actions if a.choices is not None}
    assert choices["precision"] == PRECISIONS and choices["optimizer"] == OPTIMIZERS and choices["mode"] == MODES
    assert choices["parallelism"] == STRATEGIES and choices["runtime"] == RUNTIMES


# ---------------------------------------------------------------- issue 26 item 4: no flag silently ignored

@pytest.mark.parametrize(("argv", "flag"), [
    (["--model", "gpt2", "--gpu", "rtx-4090", "--mode", "infer", "--optimizer", "sgd"], "--optimizer"),
    (["--model", "gpt2", "--gpu", "rtx-4090", "--mode", "infer", "--gradient-checkpointing"],
     "--gradient-checkpointing"),
    (["--model", "mnist-cnn", "--gpu", "rtx-4090", "--total-tokens", "1e9"], "--total-tokens"),
    (["--model", "gpt2", "--gpu", "rtx-4090", "--num-gpus", "3", "--batch-size", "4"], "--batch-size 4"),
    (["--model", "gpt2", "--gpu", "rtx-4090", "--parallelism", "zero3"], "--parallelism zero3"),
])
def test_a_flag_that_does_nothing_gets_a_warning_naming_it(argv: list[str], flag: str,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["estimate", *argv, "--calibration", "none", "--json"]) == 0
    captured = capsys.readouterr()
    json.loads(captured.out)  # stdout stays one document
    warnings = [line for line in " ".join(captured.err.split()).split("warning: ") if flag in line]
    assert warnings, captured.err


def test_a_plain_job_gets_no_warning(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["estimate", "--model", "gpt2", "--gpu", "rtx-4090", "--num-gpus", "2", "--batch-size", "4",
                 "--calibration", "none", "--json"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_a_calibration_file_of_another_card_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    probe = Path(__file__).parent / "data" / "gpu-runs" / "h100-2026-11-28" / "probe-full.json"
    assert main(["estimate", "--model", "gpt2", "--gpu", "rtx-4090", "--calibration", str(probe)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "h100-sxm5-80gb" in err and "GeForce RTX 4090" in err and "hint:" in err
    assert main(["estimate", "--model", "gpt2", "--gpu", "h100-sxm5-80gb", "--calibration", str(probe),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["calibrated"] is True


def test_amp_bf16_on_a_card_without_bf16_is_costed_at_amp_fp16(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["estimate", "--model", "bert-base", "--gpu", "t4", "--batch-size", "8", "--seq-len", "128",
                 "--calibration", "none", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["workload"]["precision"] == "amp-fp16"
    assert "costed at amp-fp16" in " ".join(captured.err.split())
