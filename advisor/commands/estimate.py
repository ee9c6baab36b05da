"""``estimate``: does a model fit on a card, and how fast does one step run.

``add_workload_args(parser)`` and ``workload_kwargs(args)`` are shared with ``recommend``:
every flag that describes the workload (not the card) lives there.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from advisor.commands._output import (
    add_assumptions_flag,
    add_json_flag,
    add_specs_dir_flag,
    fit_table,
    print_assumptions,
    print_json,
    stderr_console,
    stdout_console,
    table,
    tracing_spinner,
)
from advisor.workload.options import (
    DOORS,
    MODES,
    OPTIMIZERS,
    PARALLELISMS,
    PRECISIONS,
    QUANTIZE_BASES,
    WorkloadOptions,
)

if TYPE_CHECKING:
    from rich.console import Console

    from advisor.advice import FitAdvice
    from advisor.estimator import Estimate

_DEFAULT = WorkloadOptions()


def _gen_len(text: str) -> int:
    """--gen-len: a whole number >= 0 (0: no generation, one forward with logits at every position)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 (0: one forward, no generation), got {value}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == math.inf:  # float() of a 400-digit number is inf: no rate or count is infinite
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text[:40]}")
    return value


def add_workload_args(parser: argparse.ArgumentParser) -> None:
    """Add the flags that describe a workload (shared by ``estimate`` and ``recommend``).

    Not included (each command adds its own): ``--gpu``, ``--num-gpus``/``--max-gpus``,
    ``--specs-dir``, ``--json``.
    """
    g = parser.add_argument_group("workload")
    g.add_argument("--model", required=True, metavar="M",
                   help="preset name (e.g. llama-3-8b, resnet50) or path to a HF-style config.json")
    g.add_argument("--batch-size", type=_positive_int, default=_DEFAULT.batch_size, metavar="B",
                   help="global batch of one micro-step, across data-parallel replicas "
                        f"(default {_DEFAULT.batch_size})")
    g.add_argument("--seq-len", type=_positive_int, metavar="L", help="sequence length (language models)")
    g.add_argument("--image-size", type=_positive_int, metavar="S", help="image side in pixels (vision models)")
    g.add_argument("--precision", default=_DEFAULT.precision, choices=PRECISIONS, metavar="P",
                   help=f"one of: {', '.join(PRECISIONS)} (default {_DEFAULT.precision})")
    g.add_argument("--optimizer", default=_DEFAULT.optimizer, choices=OPTIMIZERS, metavar="O",
                   help=f"one of: {', '.join(OPTIMIZERS)} (default {_DEFAULT.optimizer})")
    g.add_argument("--mode", default=_DEFAULT.mode, choices=MODES, help=f"train or infer (default {_DEFAULT.mode})")
    g.add_argument("--gradient-checkpointing", action="store_true", help="recompute activations in backward")
    g.add_argument("--lora-rank", type=_positive_int, metavar="R", help="train LoRA adapters of this rank only")
    g.add_argument("--quantize-base", choices=QUANTIZE_BASES, help="quantize the frozen base (QLoRA: nf4)")
    g.add_argument("--grad-accum", type=_positive_int, default=_DEFAULT.grad_accum, metavar="K",
                   help=f"micro-batches per optimizer step (default {_DEFAULT.grad_accum})")
    g.add_argument("--parallelism", choices=PARALLELISMS, metavar="X",
                   help=f"multi-GPU strategy: {', '.join(PARALLELISMS)} (default ddp when several GPUs)")
    from advisor.workload.transformer import DEFAULT_GEN_LEN

    g.add_argument("--gen-len", type=_gen_len, metavar="N",
                   help="infer of causal LMs: tokens generated per request after a prefill of --seq-len "
                        f"(default {DEFAULT_GEN_LEN}: generation); 0: one forward over the whole sequence with "
                        "logits at every position (scoring, evaluation, embeddings, reward models)")
    g.add_argument("--loader-samples-per-s", type=_positive_float, metavar="X",
                   help="what your data loader delivers (samples/s), to flag input-bound steps")
    g.add_argument("--dataset-samples", type=_positive_int, metavar="N",
                   help="samples per epoch (the job: time to train, or to serve with --mode infer)")
    g.add_argument("--epochs", type=_positive_float, default=1, metavar="E", help="epochs (default 1)")
    g.add_argument("--total-tokens", type=_positive_float, metavar="T", help="tokens to train on (time to train)")
    g.add_argument("--door", default=_DEFAULT.door, choices=DOORS,
                   help="how a named transformer (preset, config.json, Hub id) is priced: closed (the closed-form "
                        "builder, the default) or trace (its transformers module built and traced once, cached; "
                        "needs gpu-advisor[hf]); docs/doors.md")
    g.add_argument("--runtime", default="eager", choices=("eager", "graph"),
                   help="eager: PyTorch eager, whose per-op host dispatch can bound small steps (default); "
                        "graph: CUDA graphs / torch.compile reduce-overhead / TensorRT / vLLM / llama.cpp")
    g.add_argument("--channels-last", action="store_true",
                   help="a CNN run in torch.channels_last (NHWC): no cuDNN layout transposes (default: NCHW)")
    g.add_argument("--calibration", default="auto", metavar="auto|none|FILE",
                   help="auto: latest probe of the card in the history store; none: defaults; "
                        "FILE: a probe JSON (default auto)")


def workload_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of ``advisor.estimate`` that ``add_workload_args`` parsed.

    ``model`` is not included (pass ``args.model`` positionally); neither are ``gpu``,
    ``num_gpus`` and ``specs_dir``.  ``--calibration auto`` is resolved here, at the edge: the history
    store is read once and the estimator gets its data (``StoredProbes``).
    """
    from advisor.calibration import resolve_calibration, skipped_rows_warning

    calibration: Any = args.calibration
    if isinstance(calibration, str) and calibration.lower() == "none":
        calibration = None
    calibration = resolve_calibration(calibration)
    if (warning := skipped_rows_warning(calibration)) is not None:
        stderr_console().print(warning, markup=False)
    options = WorkloadOptions(**{name: getattr(args, name) for name in WorkloadOptions.names()})
    return {
        **options.keywords(),
        "parallelism": args.parallelism,
        "calibration": calibration,
        "loader_samples_per_s": args.loader_samples_per_s,
        "dataset_samples": args.dataset_samples,
        "epochs": args.epochs,
        "total_tokens": args.total_tokens,
        "runtime": args.runtime,
        "channels_last": args.channels_last,
    }


def ignored_flags(args: argparse.Namespace, *, num_gpus: int | None = None,
                  has_tokens: bool | None = None) -> list[str]:
    """A warning for every flag given that does nothing for this job (shared by ``estimate`` and ``recommend``).

    Args:
        args: the parsed workload flags.
        num_gpus: the card count (``estimate``), for the batch split and ``--parallelism``; ``None``: not fixed.
        has_tokens: whether the model has a sequence (``--total-tokens`` needs one); ``None``: not known.
    """
    out = []
    if args.mode == "infer":
        given = [flag for flag, on in (("--optimizer", args.optimizer != _DEFAULT.optimizer),
                                       ("--gradient-checkpointing", args.gradient_checkpointing),
                                       ("--grad-accum", args.grad_accum != _DEFAULT.grad_accum),
                                       ("--epochs", args.epochs != 1), ("--dataset-samples", args.dataset_samples))
                 if on]
        out += [f"warning: {flag} does nothing in --mode infer (no backward pass, no optimizer step); ignored"
                for flag in given]
    if has_tokens is False and args.total_tokens is not None:
        out.append("warning: --total-tokens does nothing for a model without a token sequence (a CNN's job is "
                   "samples: give --dataset-samples and --epochs); ignored")
    if args.dataset_samples is not None and args.total_tokens is not None:
        out.append("warning: --total-tokens is ignored when --dataset-samples is given (the job is dataset samples x "
                   "epochs)")
    if num_gpus is not None:
        if num_gpus == 1 and args.parallelism is not None:
            out.append(f"warning: --parallelism {args.parallelism} does nothing on one GPU (--num-gpus 1); ignored")
        elif num_gpus > 1 and args.parallelism != "tp" and args.batch_size % num_gpus:
            per = -(-args.batch_size // num_gpus)
            out.append(f"warning: --batch-size {args.batch_size} does not split evenly over {num_gpus} GPUs: each "
                       f"runs {per}, so {per * num_gpus} samples are computed per step (a multiple of {num_gpus}, "
                       "e.g. --batch-size " f"{per * num_gpus}, says what runs)")
    return out


def add_parser(subparsers: Any) -> None:
    """Register ``estimate``."""
    p = subparsers.add_parser(
        "estimate", help="memory and step time of a model on a card",
        description="Estimate per-GPU peak memory (with a breakdown, as nvidia-smi would show it) and step "
                    "time (roofline per op, calibrated by a probe of the card when one exists) of a model on "
                    "a card. Every assumption is listed.")
    p.add_argument("--gpu", required=True, metavar="G", help="catalog id, marketing name or NVML name")
    p.add_argument("--num-gpus", type=_positive_int, default=1, metavar="N", help="GPUs (default 1)")
    p.add_argument("--breakdown", action="store_true",
                   help="step time per op class (GEMM, attention, conv, norm, elementwise, optimizer, host, "
                        "communication) and what would make each faster")
    add_workload_args(p)
    add_specs_dir_flag(p)
    add_assumptions_flag(p)
    add_json_flag(p)
    p.set_defaults(func=run)


def _gib(n: float) -> str:
    return f"{n / 1024**3:,.2f} GiB"


def _check_calibration_card(calibration: Any, e: Any, spec: Any) -> None:
    """A ``--calibration`` probe file of another card is an error: it would silently calibrate nothing."""
    from pathlib import Path

    from advisor.errors import EstimateError

    if not isinstance(calibration, str) or calibration.lower() in ("auto", "none", "off") or e.calibrated:
        return
    import json

    try:
        data = json.loads(Path(calibration).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # the estimator already said what is wrong with an unreadable file
    devices = [d.get("catalog_id") or d.get("name") for d in data.get("devices", []) if isinstance(d, dict)]
    if devices:
        raise EstimateError(f"--calibration {calibration} holds no probe of {spec.name} ({spec.id}): it was measured "
                            f"on {', '.join(str(d) for d in devices)}",
                            hint=f"probe a {spec.name} (`python -m advisor probe --json --out FILE` on it), estimate "
                                 "the card the file was measured on, or use --calibration auto / none")


def run(args: argparse.Namespace) -> int:
    """``estimate``."""
    e, advice = _estimate_and_advise(args)
    if args.json:
        print_json({**e.to_dict(), "fit_options": advice.to_dict()})
        return 0
    d = e.to_dict()
    m, t, w = d["memory"], d["time"], d["workload"]
    console = stdout_console()
    shape = f"seq {w['seq_len']}" if w["seq_len"] else f"image {w['image_size']}" if w["image_size"] else ""
    console.print(f"[bold]{d['model']}[/bold] on {d['num_gpus']} x {d['gpu']['name']} ({d['gpu']['id']}): "
                  f"{w['mode']}, batch {w['batch_size']} {shape}, {w['precision']}"
                  + (f", {w['optimizer']}" if w["mode"] == "train" else "")
                  + (f", {d['parallelism']}" if d["num_gpus"] > 1 else "")
                  + ("  [calibrated by a probe]" if d["calibrated"] else ""))
    _print_memory(console, m, advice)
    console.print(table("time", ("", "value"), _time_rows(t, w["mode"]), right_align=("value",)))
    if getattr(args, "breakdown", False):
        from advisor.estimator.time import class_breakdown
        from advisor.units import format_seconds

        brows = [(name, format_seconds(sec), f"{share:.0%}", helps)
                 for name, sec, share, helps in class_breakdown(t.get("by_class", {}), t["step_s"],
                                                                t.get("class_advice"))]
        console.print(table("step time by op class", ("class", "time", "share", "what would make it faster"), brows,
                            right_align=("time", "share")))
    if t.get("limiter") == "host":
        console.print("hint: the GPU waits for PyTorch's per-op dispatch here: a larger batch, torch.compile with "
                      "CUDA graphs (mode='reduce-overhead'), or a graph runtime (vLLM, TensorRT-LLM) removes most "
                      "of it; --runtime graph estimates that")
    console.print(f"FLOPs per step: {d['flops_per_step']:.3e}")
    print_assumptions(console, d["assumptions"], args.assumptions, limiter=t.get("limiter"), fits=m["fits"])
    return 0


def _estimate_and_advise(args: argparse.Namespace) -> tuple[Estimate, FitAdvice]:
    """The estimate of the job as the flags give it, what would make it fit, and every warning on stderr."""
    from advisor.advice import fit_options
    from advisor.api import estimate
    from advisor.catalog import get_gpu
    from advisor.estimator import matmul_rate
    from advisor.recommender import PRECISION_FALLBACKS

    specs_dir = args.specs_dir[0] if args.specs_dir else None
    kwargs = workload_kwargs(args)
    spec = get_gpu(args.gpu, specs_dir=specs_dir)
    fallback = PRECISION_FALLBACKS.get(args.precision)
    if fallback and matmul_rate(spec, args.precision) is None and matmul_rate(spec, fallback) is not None:
        # costed, not refused: the same rule as recommend's
        kwargs["precision"] = fallback
        stderr_console().print(f"note: {spec.name} has no {args.precision} rate: costed at {fallback} (same memory; "
                               "fp16 autocast needs loss scaling)", markup=False)
    with tracing_spinner():
        e = estimate(args.model, spec, num_gpus=args.num_gpus, specs_dir=specs_dir, **kwargs)
    _check_calibration_card(args.calibration, e, spec)
    for warning in ignored_flags(args, num_gpus=args.num_gpus, has_tokens=e.to_dict()["workload"]["seq_len"]
                                 is not None):
        stderr_console().print(warning, markup=False)
    if args.calibration == "auto":
        problem = getattr(kwargs["calibration"], "problem", None)  # the history store, as read for this estimate
        if problem:
            stderr_console().print(f"warning: the history store could not be read, so no probe calibrates this "
                                   f"estimate: {problem}", markup=False)
    # What would make it fit (empty when it fits): one library function, shared with recommend and the dashboard.
    with tracing_spinner():
        advice = fit_options(args.model, args.gpu, num_gpus=args.num_gpus, specs_dir=specs_dir, base=e, **kwargs)
    for note in e.assumptions:  # warnings stay in the assumptions (and the JSON), and are said on stderr too
        if note.startswith("warning:"):
            stderr_console().print(note, markup=False)
    return e, advice


def _print_memory(console: Console, m: Mapping[str, Any], advice: FitAdvice) -> None:
    """The memory table, the verdict, why it does not fit and what would make it fit."""
    # what a user can act on, largest first, each with what shrinks it (the JSON keeps breakdown_bytes as well)
    parts = m.get("categories_bytes") or m["breakdown_bytes"]
    shrink = m.get("category_advice", {})
    rows: list[tuple[str, str, str, str | None]] = [
        (k, _gib(v), f"{100 * v / m['total_bytes']:.1f}%" if m["total_bytes"] else "-", shrink.get(k))
        for k, v in sorted(parts.items(), key=lambda kv: -kv[1])]
    rows.append(("total (per GPU)", _gib(m["total_bytes"]), "100%", None))
    rows.append(("usable on card", _gib(m["usable_bytes"]), "", None))
    console.print(table("memory per GPU", ("category", "size", "share", "what shrinks it"), rows,
                        right_align=("size", "share")))
    verdict = "[green]fits[/green]" if m["fits"] else "[red]does not fit[/red]"
    mb = m["max_batch_size"]
    if m["fits"] or mb:
        console.print(f"verdict: {verdict} (margin {_gib(m['margin_bytes'])}); largest global batch that fits: {mb}")
    else:
        console.print(f"verdict: {verdict} (margin {_gib(m['margin_bytes'])})")
    if advice.why:
        console.print(f"why: {advice.why}")
    if advice.options:
        console.print(fit_table(advice))


def _time_rows(t: Mapping[str, Any], mode: str) -> list[tuple[str, str]]:
    """The time table's rows: the step, the rates, the phases, what limits it and the job's time."""
    from advisor.ranking import job_time_words
    from advisor.units import format_seconds

    trows: list[tuple[str, str]] = [("step", format_seconds(t["step_s"])),
                                    ("samples/s (GPUs)", f"{t['samples_per_s']:,.1f}")]
    eff = t.get("effective_samples_per_s")
    if eff is not None and eff < t["samples_per_s"] * (1 - 1e-9):
        trows.append(("samples/s (effective: input pipeline)", f"{eff:,.1f}"))
    if t["tokens_per_s"] is not None:
        trows.append(("tokens/s", f"{t['tokens_per_s']:,.0f}"))
    if t.get("prefill_s") is not None:
        trows.append(("prefill", format_seconds(t["prefill_s"])))
    if t.get("decode_tokens_per_s") is not None:
        trows.append(("decode tokens/s", f"{t['decode_tokens_per_s']:,.1f}"))
    trows.append(("bound", t["bound"]))
    if t.get("limiter") == "host":
        trows.append(("limited by", f"host dispatch ({t.get('runtime', 'eager')}): "
                                    f"{format_seconds(t.get('host_s', 0.0))} beyond GPU time"))
    if t.get("mfu") is not None:
        trows.append(("MFU", f"{100 * t['mfu']:.1f}%"))
    if t.get("comm_s"):
        trows.append(("communication (exposed)", format_seconds(t["comm_s"])))
    for phase, seconds in t.get("phases_s", {}).items():
        if not phase.startswith("communication"):
            trows.append((f"  {phase}", format_seconds(seconds)))
    if t.get("time_to_train_s") is not None:
        trows.append((job_time_words(mode), format_seconds(t["time_to_train_s"])))
    if t.get("input_bound"):
        trows.append(("input", "INPUT-BOUND: " + (t.get("input_advice") or "")))
    return trows
