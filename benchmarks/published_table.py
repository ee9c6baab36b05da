"""Compare the advisor's estimates with published measurements and write docs/accuracy-published.md.

Every row of tests/data/published_measurements.csv (a figure found in a public source, with
the source named) is re-estimated with ``advisor.estimate`` on the same card, batch, precision
and options; error = predicted / measured - 1.

    .venv/bin/python benchmarks/published_table.py            # print the table, rewrite the doc
    .venv/bin/python benchmarks/published_table.py --no-write # print only

tests/test_published.py imports ``evaluate`` from here and asserts the median errors.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CSV_PATH = ROOT / "tests" / "data" / "published_measurements.csv"
DOC_PATH = ROOT / "docs" / "accuracy-published.md"

THROUGHPUT_METRICS = ("samples_per_s", "tokens_per_s", "tokens_per_s_per_gpu", "decode_tokens_per_s", "prefill_s")
MEMORY_METRICS = ("peak_memory_gib", "peak_memory_gb", "peak_memory_mib")
#: Targets of issue 5 (median |error|).
THROUGHPUT_TARGET = 0.25
#: The throughput median may not get worse than it stood before the step-time model of issue 13 (20.9%).
#: 11.1% since the closed form follows Hugging Face's RMSNorm / rotary kernels (issue 25), 11.4% since the estimator
#: profiles of issue 24, 13.0% before them: 11.4% until the DeepLearningExamples BERT rows
#: took the eager attention their code runs, 12.8% until the foreach optimizer kernels ran at their measured share of
#: the bandwidth (docs/accuracy.md); 12.0% since fp32 matmuls are priced by one rule at either door (SGEMM on the
#: FP32 units at the profile's measured rate, no tensor-core alignment penalty): the six V100 BERT-large fp32 rows
#: went from -8..-16% to +12..+21% (docs/accuracy-kernels.md).  12.0% still once the rows name the optimizer their
#: harness ran and per-parameter loops are priced (advisor/optimizers.py): DeepLearningExamples' fp32 / TF32 SQuAD rows
#: run BertAdam (V100 +21.1 -> +11.4%, A100 +35.2 -> +17.2%), its --fp16 rows apex's FusedAdam (V100 +2.1 -> +12.5%,
#: A100 +17.1 -> +23.7%, Lambda's RTX 4090 / 3090 -19.2 / -10.1 -> -13.2 / -5.5%: apex amp O2's master-weight copies
#: and the harness's per-step clip with its .item() are not priced); the Hugging Face Trainer rows' adamw_hf loop is
#: bound by its kernels' bytes as foreach is (their +12..+20% did not move: not the optimizer).  Median 12.03 -> 12.01%.
THROUGHPUT_RATCHET = 0.121
MEMORY_TARGET = 0.10
#: Issue 14: the peak-memory median may not get worse than 8% (it stood at 8.4%; 2.7% with each source's own
#: measured CUDA context where it gave one, ``source_context_mib``).
MEMORY_RATCHET = 0.08


@dataclass(frozen=True)
class RowResult:
    """One published row and the advisor's prediction for it."""

    id: str
    model: str
    gpu: str
    metric: str
    measured: float
    predicted: float | None
    error: float | None  # predicted / measured - 1 (for prefill_s: measured / predicted - 1, a rate error)
    note: str

    @property
    def kind(self) -> str:
        return "memory" if self.metric in MEMORY_METRICS else "throughput"


def load_rows(path: Path = CSV_PATH) -> list[dict[str, str]]:
    """The CSV rows, as strings."""
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _options(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        if "=" not in part:
            continue  # continuation of a list value (lora_targets=q;v)
        key, value = part.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def estimate_kwargs(row: dict[str, str]) -> dict[str, Any]:
    """The ``advisor.estimate`` keyword arguments for one CSV row (the workload's options included)."""
    opts = _options(row["options"])
    kw: dict[str, Any] = {
        "num_gpus": int(row["num_gpus"]),
        "batch_size": int(row["batch_size"]),
        "precision": row["precision"],
        "mode": row["mode"],
        "calibration": None,  # published figures are compared with the uncalibrated model
    }
    if row["seq_len"]:
        kw["seq_len"] = int(row["seq_len"])
    if row["image_size"]:
        kw["image_size"] = int(row["image_size"])
    if row["mode"] == "train":
        kw["optimizer"] = row["optimizer"] or "adamw"
    if "lora_rank" in opts:
        kw["lora_rank"] = int(opts["lora_rank"])
    if opts.get("quantize_base"):
        kw["quantize_base"] = opts["quantize_base"]
    if opts.get("gradient_checkpointing") in ("1", "true", "True"):
        kw["gradient_checkpointing"] = True
    if "grad_accum" in opts:
        kw["grad_accum"] = int(opts["grad_accum"])
    if "gen_len" in opts and int(opts["gen_len"]) > 0:
        kw["gen_len"] = int(opts["gen_len"])
    if opts.get("parallelism"):
        kw["parallelism"] = opts["parallelism"]
    if opts.get("runtime"):
        kw["runtime"] = opts["runtime"]
    if opts.get("channels_last") in ("1", "true", "True"):
        kw["channels_last"] = True
    return kw


#: Keyword arguments of ``estimate`` that are not workload build options.
_ESTIMATE_ONLY = ("num_gpus", "calibration", "parallelism", "runtime", "channels_last")


def build_row_workload(row: dict[str, str]) -> Any:
    """The row's workload, with the build options ``estimate`` does not expose (attention, lora_targets)."""
    from advisor.workload import load_workload

    kw = {k: v for k, v in estimate_kwargs(row).items() if k not in _ESTIMATE_ONLY}
    opts = _options(row["options"])
    if "attention" in opts:
        kw["attention"] = opts["attention"]
    if "repeat_kv" in opts:  # the source's transformers copied grouped keys / values per query head (< 4.48)
        kw["repeat_kv"] = opts["repeat_kv"] in ("1", "true", "True")
    if "lora_targets" in opts:
        kw["lora_targets"] = tuple(t.strip() for t in opts["lora_targets"].split(","))
    return load_workload(row["model"], **kw)


def predict(row: dict[str, str]) -> tuple[float | None, str]:
    """The advisor's figure for the row's metric, and a note (why it is missing, or what was compared)."""
    from advisor.api import estimate
    from advisor.errors import AdvisorError

    kw = estimate_kwargs(row)
    metric = row["metric"]
    try:
        workload = build_row_workload(row)
        e = estimate(workload, row["gpu"], **kw)  # the same sizes again: estimate uses them for parallelism
    except AdvisorError as exc:
        return None, f"not estimable: {exc.message}"
    except (ImportError, NotImplementedError) as exc:  # a workload path not built (yet): say so, go on
        return None, f"not estimable: {type(exc).__name__}: {exc}"
    t, m = e.time, e.memory
    batch = kw["batch_size"]
    if metric == "samples_per_s":
        return float(t.samples_per_s), ""
    if metric == "tokens_per_s":
        prefill = getattr(t, "prefill_s", None)
        if row["mode"] == "infer" and prefill:
            return batch * kw["seq_len"] / prefill, "prefill tokens/s = batch x seq_len / prefill_s"
        return (None, "estimate has no tokens_per_s") if t.tokens_per_s is None else (float(t.tokens_per_s), "")
    if metric == "tokens_per_s_per_gpu":
        if t.tokens_per_s is None:
            return None, "estimate has no tokens_per_s"
        return float(t.tokens_per_s) / kw["num_gpus"], "tokens_per_s / num_gpus"
    if metric == "prefill_s":
        prefill = getattr(t, "prefill_s", None)
        return (None, "estimate has no prefill_s") if prefill is None else (float(prefill), "")
    if metric == "decode_tokens_per_s":
        step = getattr(t, "decode_step_s", None)
        if step is None:
            return None, "estimate has no decode_step_s"
        gen = kw.get("gen_len", 128)
        prefill = getattr(t, "prefill_s", None) or 0.0
        # Published figures are output tokens / wall time of the whole run (prefill included).
        return batch * gen / (prefill + gen * float(step)), "batch x gen_len / (prefill_s + gen_len x decode_step_s)"
    if metric in MEMORY_METRICS:
        total = float(m.total_bytes)
        note = ""
        if "max_memory_allocated" in row["notes"]:
            # what is not a tensor: the CUDA context and the caching allocator's reserve (the step's transient
            # tensors, in the same "overhead" total, are allocated)
            detail = m.to_dict()["overhead_detail_bytes"]
            total -= float(detail.get("cuda_context", 0.0)) + float(detail.get("allocator", 0.0))
            note = "compared without the estimate's CUDA context and allocator reserve: source counts tensors only"
        context_mib = _options(row["options"]).get("source_context_mib")
        if context_mib:  # the source measured its own stack's CUDA context + kernels (eager module loading)
            total += float(context_mib) * 1024**2 - float(m.to_dict()["overhead_detail_bytes"].get("cuda_context", 0))
            note = (f"CUDA context + kernels as the source measured them on its stack ({context_mib} MiB) in place "
                    "of the estimate's lazy-loading figure")
        scale = {"peak_memory_gb": 1e9, "peak_memory_mib": 1024**2}.get(metric, 1024**3)
        return total / scale, note
    return None, f"unknown metric {metric!r}"


def evaluate(path: Path = CSV_PATH) -> list[RowResult]:
    """Predict every row."""
    results = []
    for row in load_rows(path):
        measured = float(row["value"])
        predicted, note = predict(row)
        if predicted is None or predicted <= 0:
            err = None
        elif row["metric"] == "prefill_s":
            err = measured / predicted - 1  # as a rate (tokens/s) error, comparable with the others
        else:
            err = predicted / measured - 1
        results.append(RowResult(row["id"], row["model"], row["gpu"], row["metric"], measured, predicted, err, note))
    return results


def medians(results: list[RowResult]) -> dict[str, float | None]:
    """Median |error| of throughput rows and of memory rows (rows without a prediction are left out)."""
    out: dict[str, float | None] = {}
    for kind in ("throughput", "memory"):
        errs = [abs(r.error) for r in results if r.kind == kind and r.error is not None]
        out[kind] = statistics.median(errs) if errs else None
    return out


def markdown(results: list[RowResult]) -> str:
    """The doc page: method, per-row table, medians against the targets."""
    med = medians(results)
    rows = load_rows()
    src = {r["id"]: r["source"] for r in rows}
    lines = [
        "# Accuracy against published measurements",
        "",
        "Generated by `benchmarks/published_table.py` from `tests/data/published_measurements.csv`"
        " (do not edit by hand). Each row is a figure found in a public source (named per row);"
        " the advisor re-estimates it on the same card, batch, precision and options with"
        " `calibration=None`. Error = predicted / measured - 1 (for `prefill_s`, measured / predicted - 1,"
        " i.e. the error of the rate). `tests/test_published.py` asserts the medians.",
        "",
        f"- throughput rows: median |error| = {_pct(med['throughput'])} (target <= {THROUGHPUT_TARGET:.0%})",
        f"- peak-memory rows: median |error| = {_pct(med['memory'])} (target <= {MEMORY_TARGET:.0%})",
        f"- rows without a prediction: {sum(r.error is None for r in results)} of {len(results)}",
        "",
        "## Throughput by architecture (estimator profile; signed median: + means the advisor is optimistic)",
        "",
        "| profile | evidence | rows | median error (signed) | median abs error |",
        "|---|---|---:|---:|---:|",
        *_arch_lines(results),
        "",
        "## Median |error| by model and metric",
        "",
        "| model | metric | rows | median error (signed) | median abs error |",
        "|---|---|---:|---:|---:|",
        *_group_lines(results),
        "",
        "## How the rows are compared",
        "",
        "- `samples_per_s`: the estimate's `time.samples_per_s` (global). `tokens_per_s` (prefill rows): "
        "batch x seq_len / `time.prefill_s`. `tokens_per_s_per_gpu`: `time.tokens_per_s` / num_gpus.",
        "- `decode_tokens_per_s`: published figures are output tokens / wall time of the run, so the prediction is "
        "batch x gen_len / (`prefill_s` + gen_len x `decode_step_s`).",
        "- `prefill_s`: time to first token; the error is that of the rate (measured / predicted - 1).",
        "- memory: `peak_memory_mib` rows are NVML 'used' (what nvidia-smi shows, CUDA context included) and are "
        "compared with `memory.total_bytes`; rows whose source is `torch.cuda.max_memory_allocated()` (tensors only) "
        "are compared with `total_bytes` less the estimate's `overhead` category.",
        "- Build options the sources state but `estimate()` does not expose (`attention=eager` for transformers 4.2x "
        "BERT, LoRA targets q,v for LitGPT) are passed to `advisor.workload.load_workload` and the workload is "
        "handed to `estimate()`; `parallelism` comes from the row's options.",
        "- `runtime`: rows from TensorRT(-LLM), vLLM, llama.cpp and compiled gpt-fast carry `runtime=graph` (no per-op "
        "host dispatch floor); every other row is PyTorch eager, where each phase takes at least its dispatched "
        "operators x host time per op (docs/estimates.md, 'Eager host dispatch').",
        "- Approximations stated per row in the CSV `notes`: LAMB (NVIDIA BERT pretraining) is costed as adamw "
        "(same two moments); A10G runs are estimated on the catalog A10 (same 24 GB) for memory; HSDP over 128 GPUs is "
        "modelled as fsdp over one 8-GPU node; llama.cpp Q8_0 (~8.5 bits/weight) is costed as int8.",
        "- LitGPT's two QLoRA memory rows (-29 / -30%) carry a reported LitGPT inefficiency: its QLoRA then used more "
        "memory than its LoRA at the same settings (Lightning-AI/litgpt#1112, labelled a bug), which the advisor's "
        "QLoRA does not reproduce; its LoRA rows, same runs otherwise, are within 3%.",
        "",
        "## Every row",
        "",
        "| id | model | gpu | metric | measured | predicted | error | note | source |",
        "|---|---|---|---|---:|---:|---:|---|---|",
    ]
    for r in results:
        lines.append(f"| {r.id} | {r.model} | {r.gpu} | {r.metric} | {r.measured:,.4g} | "
                     f"{'-' if r.predicted is None else f'{r.predicted:,.4g}'} | {_pct(r.error, signed=True)} | "
                     f"{r.note} | {src.get(r.id, '')} |")
    lines.append("")
    return "\n".join(lines)


def by_architecture(results: list[RowResult]) -> dict[str, list[float]]:
    """Throughput errors per estimator profile (micro-architecture) of the row's card."""
    from advisor.catalog import get_gpu
    from advisor.estimator.profiles import profile_for

    out: dict[str, list[float]] = {}
    for r in results:
        if r.kind == "throughput" and r.error is not None:
            out.setdefault(profile_for(get_gpu(r.gpu)).id, []).append(r.error)
    return out


def _arch_lines(results: list[RowResult]) -> list[str]:
    from advisor.estimator.profiles import profile_by_id

    groups = sorted(by_architecture(results).items())
    return [f"| {arch} | {profile_by_id(arch).evidence} | {len(errs)} | {_pct(statistics.median(errs), signed=True)} | "
            f"{_pct(statistics.median(abs(e) for e in errs))} |" for arch, errs in groups]


def _group_lines(results: list[RowResult]) -> list[str]:
    groups: dict[tuple[str, str], list[float]] = {}
    for r in results:
        if r.error is not None:
            groups.setdefault((r.model, r.metric), []).append(r.error)
    return [f"| {model} | {metric} | {len(errs)} | {_pct(statistics.median(errs), signed=True)} | "
            f"{_pct(statistics.median(abs(e) for e in errs))} |" for (model, metric), errs in sorted(groups.items())]


def _pct(x: float | None, signed: bool = False) -> str:
    if x is None:
        return "n/a"
    return f"{x:+.1%}" if signed else f"{x:.1%}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="print only; do not rewrite the doc")
    args = parser.parse_args(argv)
    results = evaluate()
    for r in results:
        print(f"{r.id:36s} {r.metric:20s} measured {r.measured:>10.4g} predicted "
              f"{'-' if r.predicted is None else f'{r.predicted:10.4g}':>10s} error {_pct(r.error, True):>8s} {r.note}")
    med = medians(results)
    print(f"median |error|: throughput {_pct(med['throughput'])}, memory {_pct(med['memory'])}")
    if not args.no_write:
        DOC_PATH.parent.mkdir(parents=True, exist_ok=True)
        DOC_PATH.write_text(markdown(results))
        print(f"wrote {DOC_PATH.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
