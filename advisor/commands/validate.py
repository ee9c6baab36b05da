"""``validate``: run real steps on the local device and set measured memory and time beside the estimates."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from advisor.commands._output import add_json_flag, print_json, stderr_console, stdout_console, table
from advisor.errors import AdvisorError, UnknownModelError

_DESCRIPTION = """\
Run a zoo of real training and inference steps on this machine's GPU (the CPU when there is none),
measure peak memory and step time, and set them beside `estimate` for the local card:
error = predicted / measured - 1.  Models are built from their definitions with random weights
(nothing is downloaded).  On a GPU memory is torch.cuda.max_memory_reserved (allocated and NVML used
alongside) and time comes from CUDA events (median after warm-up); on a CPU memory is the C heap's
peak growth and time perf_counter.  Results are saved to the history store.  --calibrate fits the
card's efficiencies from the measured times and stores them, so later estimates for the card are
calibrated (estimate's calibration="auto")."""


def add_parser(subparsers: Any) -> None:
    """Register ``validate``."""
    from advisor.validate import ALL_MODELS, MAX_REPEATS, QUICK_MODELS, REPEAT_BUDGET_S

    p = subparsers.add_parser("validate", help="measure real steps here and compare them with the estimates",
                              description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", metavar="MODEL",
                   help=f"models to run (default: the zoo on a GPU, the quick set on a CPU); "
                        f"one or more of: {', '.join(ALL_MODELS)}")
    p.add_argument("--quick", action="store_true",
                   help=f"small models only (default on a CPU: {', '.join(QUICK_MODELS)})")
    p.add_argument("--calibrate", action="store_true",
                   help="fit the card's matmul/conv efficiencies from the measured times and save them to the "
                        "history store (later estimates for this card use them)")
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                   help="where to run (default: cuda if torch sees a GPU, else cpu)")
    p.add_argument("--warmup", type=int, default=2, metavar="N", help="untimed steps per case (default 2)")
    p.add_argument("--iters", type=int, default=5, metavar="N",
                   help="timed steps per case; the median is kept (default 5).  A round of N steps that spreads "
                        "more than the probe's rule allows (IQR/median over its limit, as `probe` marks noisy "
                        f"kernels) is timed again, up to {MAX_REPEATS} more rounds while under {REPEAT_BUDGET_S:g} s; "
                        "the steadiest round is kept, and a row still untrusted (or with too few steps to tell) is "
                        "marked noisy")
    p.add_argument("--no-save", action="store_true", help="do not save the run to the history store")
    p.add_argument("--profile", type=int, nargs="?", const=3, default=0, metavar="STEPS",
                   help="after the timed steps (and the memory peak), run STEPS more (default 3) under torch.profiler "
                        "(its own log lines go into the profile, not the output) and set the measured "
                        "time per op class (GEMM, attention, conv, norm, elementwise, optimizer, host) beside the "
                        "estimate's; saved with the run")
    p.add_argument("--replay", metavar="RUN", help="run nothing: re-predict the measured rows of a saved run (a "
                   "`validate --json` file, or a validation id of the history store) with the current estimator "
                   "and print the same table and summary")
    p.add_argument("--calibration", default="auto", metavar="auto|none|PROBE.json",
                   help="with --replay: 'auto' (the card's newest stored probe, default), 'none' (spec sheet only) "
                        "or a `probe --json` file")
    add_json_flag(p)
    p.set_defaults(func=run)


def _pct(x: float | None) -> str | None:
    return None if x is None else f"{x:+.1%}"


def _abs_pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def run(args: argparse.Namespace) -> int:
    """``validate``."""
    from advisor import validate as v

    if args.warmup < 0:
        raise AdvisorError(f"--warmup must be >= 0, got {args.warmup}")
    if args.iters < 1:
        raise AdvisorError(f"--iters must be >= 1, got {args.iters}")
    if args.profile < 0:
        raise AdvisorError(f"--profile must be >= 0 steps, got {args.profile}")
    for name in args.models or ():  # before anything slow (torch, the CPU rates)
        if name not in v.ALL_MODELS:
            raise UnknownModelError(f"unknown validate model {name!r}", hint=f"accepted: {', '.join(v.ALL_MODELS)}")
    if args.replay is not None:
        return _replay(args)
    from advisor.device import cuda_runtime

    if args.device == "cuda" and not cuda_runtime().is_available():
        raise AdvisorError("--device cuda: torch sees no CUDA device",
                           hint="run without --device (the CPU is used), or check the driver with `probe`")
    device = v.local_device(prefer_cuda=args.device != "cpu")
    cuda = device.kind == "cuda"
    cases = v.default_cases(args.models, quick=args.quick, cuda=cuda, card=device.catalog_id)
    notes: list[str] = []
    predict = None
    spec = None
    if args.calibrate:
        if device.catalog_id is None:
            notes.append("--calibrate: nothing saved: " + ("the local CPU is not a catalog card" if not cuda else
                                                            f"{device.name} is not in the catalog"))
        else:
            from advisor.catalog import get_gpu

            spec = get_gpu(device.catalog_id)
            predict = v.estimate_predictor(device.catalog_id, calibration=None)  # fit against the defaults
            notes.append("--calibrate: predictions use the default (uncalibrated) efficiencies")
    err = stderr_console()

    def progress(i: int, n: int, case: Any) -> None:
        err.print(f"[{i + 1}/{n}] {case.model} {case.label()}", highlight=False)

    nvml_used, close_nvml = _nvml_used(device) if cuda else (None, None)
    try:
        report = v.run_validation(cases, device, predict=predict, warmup=args.warmup, iters=args.iters,
                                  nvml_used=nvml_used, progress=progress, notes=notes, profile=args.profile)
    finally:
        if close_nvml is not None:
            close_nvml()
    doc = report.to_dict()
    # A store that cannot be written loses nothing: the results are printed anyway, with a warning (as probe does).
    not_saved: list[str] = []

    def save(what: str, call: Any) -> Any:
        from advisor.errors import StoreError

        try:
            return call()
        except StoreError as exc:
            not_saved.append(f"warning: {what} not saved: {exc.message}" + (f" ({exc.hint})" if exc.hint else ""))
            return None

    if spec is not None:
        fitted = v.fit_calibration(report, spec)
        doc["calibration"] = {"card": spec.id, "fitted": fitted, "saved_probe_id": None}
        if fitted and not args.no_save:
            from advisor.store import HistoryStore

            doc["calibration"]["saved_probe_id"] = save(
                "calibration", lambda: HistoryStore().save_probe(v.calibration_probe(report, spec, fitted)))
    if not args.no_save:
        from advisor.store import HistoryStore

        doc["saved_id"] = save("results", lambda: HistoryStore().save_validation(doc))
    _print(args, report, doc, notes)
    for line in not_saved:  # after the results: nothing is lost, and the warning is the last word
        err.print(line, markup=False)
    return 0 if doc["summary"]["measured"] or doc["summary"]["oom"] else 1


def _print(args: argparse.Namespace, report: Any, doc: dict[str, Any], notes: list[str]) -> None:
    """The table and summary of a run (or ``doc`` as JSON with ``--json``)."""
    from advisor import validate as v
    from advisor.units import format_bytes, format_seconds

    device = report.device
    if args.json:
        print_json(doc)
        return
    rows = []
    for r in report.rows:
        m = r.measurement
        if r.oom:
            status = "OOM" + ("" if r.prediction.fits is None else
                              f" (estimate said fits={r.prediction.fits})")
        else:
            status = r.error_message or ""
        if m is not None and m.noisy:
            status = (f"{status}; " if status else "") + _noisy_note(m)
        rows.append((r.model, r.case.label(), format_bytes(r.prediction.memory_bytes),
                     format_bytes(m.peak_bytes) if m else None, _pct(r.memory_error),
                     format_seconds(r.prediction.step_s), format_seconds(m.step_s) if m else None,
                     _pct(r.time_error), status))
    cols = ("model", "config", "mem pred", "mem meas", "mem err", "step pred", "step meas", "time err", "note")
    out = stdout_console()
    out.print(table(f"validate on {device.name} ({device.catalog_id or device.kind})", cols, rows,
                    right_align=cols[2:8]))
    s = doc["summary"]
    out.print(f"memory |error|: median {_abs_pct(s['memory']['median_abs_error'])}, max "
              f"{_abs_pct(s['memory']['max_abs_error'])} over {s['memory']['n']} rows; time |error|: median "
              f"{_abs_pct(s['time']['median_abs_error'])}, max {_abs_pct(s['time']['max_abs_error'])} over "
              f"{s['time']['n']} rows; {s['oom']} OOM, {s['failed']} failed")
    noisy = [r.measurement for r in report.rows if r.measurement is not None and r.measurement.noisy]
    if noisy:
        out.print(f"{len(noisy)} of {len(report.rows)} rows are noisy (step times spread more than "
                  f"{noisy[0].spread_limit:.0%} IQR/median, or too few timed steps to tell, after up to "
                  f"{1 + v.MAX_REPEATS} rounds): rerun on an idle host, or with more --iters, before trusting "
                  "their time errors")
    out.print(f"memory measured as: {device.memory_method}")
    if device.rates_source:
        out.print(f"CPU rates from: {device.rates_source}")
    for note in notes:
        out.print(note)
    _print_profiles(out, report)
    if "calibration" in doc:
        for key, fit in doc["calibration"]["fitted"].items():
            out.print(f"calibrated {key}: {fit['efficiency']:.3f} (default {fit['default']:.3f}, "
                      f"{fit['rows']} rows)")
    if doc.get("saved_id") is not None:
        print(f"saved to the history store as validation {doc['saved_id']}", file=sys.stderr)


def _noisy_note(m: Any) -> str:
    """Why a row's time is not trusted, with its spread and how many rounds of timed steps ran."""
    rounds = f" after {m.timing_rounds} rounds" if m.timing_rounds > 1 else ""
    if m.too_spread:
        return (f"noisy: step times spread {m.spread:.0%} (IQR/median){rounds}, the time error is unreliable "
                "(a busy host?)")
    return f"noisy: {len(m.step_times_s)} timed step(s) are too few to tell their spread (more --iters)"


def _print_profiles(out: Any, report: Any) -> None:
    """Measured vs predicted time per op class of the profiled rows (``--profile``)."""
    from advisor.estimator.pricing import GROUPS
    from advisor.units import format_seconds

    classes = (*GROUPS, "host (exposed)")
    rows = []
    for r in report.rows:
        m = r.measurement
        if m is None or m.profile is None:
            continue
        measured = m.profile.get("by_class_s") or {}
        predicted = r.prediction.by_class_s or {}
        cells = [f"{format_seconds(measured.get(c, 0.0))} / {format_seconds(predicted.get(c, 0.0))}"
                 if measured.get(c) or predicted.get(c) else "" for c in classes]
        rows.append((r.model, r.case.label(), *cells))
    if rows:
        used = [i for i, c in enumerate(classes) if any(row[2 + i] for row in rows)]
        out.print(table("time per op class, measured / predicted (torch.profiler)",
                        ("model", "config", *(classes[i] for i in used)),
                        [(row[0], row[1], *(row[2 + i] for i in used)) for row in rows]))


def _load_run(ref: str) -> dict[str, Any]:
    """A saved run: a ``validate --json`` file, or the id of a validation in the history store."""
    from pathlib import Path

    from advisor.files import path_state, shown_path

    path = Path(ref)
    if ref.isdigit() and path_state(path) == "missing":
        from advisor.store import HistoryStore, default_store_path

        if not default_store_path().exists():
            raise AdvisorError(f"--replay: no validation {shown_path(ref)}: there is no history store at "
                               f"{default_store_path()}",
                               hint="pass a `validate --json` file, or set $GPU_ADVISOR_HOME to the store's directory")
        return HistoryStore(default_store_path(), read_only=True).get_validation(int(ref))
    from advisor.files import read_json_object

    return read_json_object(path, kind="replay", what="--replay: the run",
                            hint="pass a file written by `validate --json`, or a validation id",
                            expected="a validate run")


def _replay(args: argparse.Namespace) -> int:
    """``validate --replay RUN``: the saved measurements, predicted anew; nothing runs, nothing is saved."""
    from advisor import validate as v

    doc = _load_run(args.replay)
    calibration = None if args.calibration.lower() in ("none", "off") else args.calibration
    report = v.replay(doc, calibration=calibration, notes=(f"replay of {args.replay}",))
    out = report.to_dict()
    _print(args, report, out, list(report.notes))
    return 0 if out["summary"]["measured"] else 1


def _nvml_used(device: Any) -> tuple[Any, Any]:
    """(NVML's used memory of the torch device: the nvidia-smi view, close) via the probe's backend.

    The NVML device is the one ``local_device`` matched to torch's by UUID (``device.device.nvml_index``);
    both are ``None`` when there is none or NVML is absent: the torch figures are the ones compared.
    """
    index = getattr(device.device, "nvml_index", None)
    if index is None:
        return None, None
    try:
        from advisor.probing import default_backend

        backend = default_backend()
    except AdvisorError:  # NVML is optional here
        return None, None

    def used() -> float | None:
        try:
            value = backend.device_info(index).memory_used_bytes
        except AdvisorError:
            return None
        return None if value is None else float(value)

    return used, backend.close
