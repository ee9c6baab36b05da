"""Regenerate the traces shipped in ``advisor/workload/traces/`` (see ``advisor.workload.trace_shipped``).

    .venv/bin/python benchmarks/ship_traces.py [--only PRESET ...] [--dir DIR]

Traces every traced preset at its default shape, in both modes and at every precision that traces differently
(``trace_shipped.TRACE_PRECISIONS``), and the validate zoo's training steps that the shared GPU runs replay
(``zoo_cases``: every zoo transformer training row of ``tests/data/gpu-runs/*/validate-*.json``) and the op counts
of the zoo's decoding loop for those runs' generation rows (``zoo_decode_cases``), and writes one
gzipped JSON per shape plus the manifest (the tracer's code fingerprint, the torch and torchvision versions, each
file's SHA-256).  Deterministic: the same tracer and torch give byte-identical files.  Run it when
``tests/test_trace_shipped.py`` says the set is stale (the tracer, the zoo or torch changed): 161 files, ~10 min on
the loaded 2-core VM.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from advisor.workload import trace_shipped as ts

RUNS = Path(__file__).resolve().parent.parent / "tests" / "data" / "gpu-runs"


def zoo_cases(runs: Path = RUNS) -> list[tuple[str, int, int, str, bool]]:
    """(model, batch, seq_len, trace precision, checkpointed) of the zoo training steps the shared runs replay.

    As ``advisor.validate.predictors.estimator_model`` maps a row onto ``trace_zoo.zoo_workload`` (a test checks
    that replaying the runs traces none of them).
    """
    from advisor.validate.replay import case_from_row
    from advisor.workload.trace import trace_precision
    from advisor.workload.zoo import TRANSFORMERS

    cases = set()
    for path in sorted(runs.glob("*/validate-*.json")):
        for row in json.loads(path.read_text())["rows"]:
            case = case_from_row(row.get("model", "?"), row.get("config") or {})
            if case.model in TRANSFORMERS and case.mode == "train":
                cases.add((case.model, case.batch_size, case.seq_len or 128, trace_precision(case.precision),
                           case.gradient_checkpointing))
    return sorted(cases)


def zoo_decode_cases(runs: Path = RUNS) -> list[tuple[str, str]]:
    """(model, precision) of the zoo generation rows of the shared runs (whose decoding loop's ops are counted)."""
    from advisor.validate.replay import case_from_row
    from advisor.workload.zoo import TRANSFORMERS

    cases = set()
    for path in sorted(runs.glob("*/validate-*.json")):
        for row in json.loads(path.read_text())["rows"]:
            case = case_from_row(row.get("model", "?"), row.get("config") or {})
            if case.model in TRANSFORMERS and case.mode == "infer" and case.gen_len:
                cases.add((case.model, case.precision))
    return sorted(cases)


def generate(directory: Path = ts.DATA_DIR, only: Sequence[str] = (), log: Any = print) -> dict[str, Any]:
    """Trace every shipped shape afresh and write the set (and its manifest) to ``directory``."""
    from advisor.workload.trace_presets import trace_pair

    directory.mkdir(parents=True, exist_ok=True)
    entries: dict[str, str] = {}
    for preset, builder, image_size, seq_len in ts.default_shapes():
        if only and preset not in only:
            continue
        for mode in ts.MODES:
            for precision in ts.TRACE_PRECISIONS:
                t0 = time.perf_counter()
                name = ts.entry_name(builder, image_size, seq_len, mode, precision)
                data, digest = ts.encode(trace_pair(builder, image_size, seq_len, mode, precision))
                (directory / name).write_bytes(data)
                entries[name] = digest
                log(f"{name}: {len(data) / 1024:.0f} KiB, traced in {time.perf_counter() - t0:.1f} s")
    if not only or "zoo" in only:
        from advisor.workload.trace_zoo import zoo_trace

        for case in zoo_cases():
            t0 = time.perf_counter()
            name = ts.zoo_entry_name(*case)
            data, digest = ts.encode_zoo(zoo_trace(*case))
            (directory / name).write_bytes(data)
            entries[name] = digest
            log(f"{name}: {len(data) / 1024:.0f} KiB, traced in {time.perf_counter() - t0:.1f} s")
        from advisor.validate.records import _autocast
        from advisor.workload.trace_zoo import zoo_decode_count

        for model, precision in zoo_decode_cases():
            name = ts.zoo_decode_entry_name(model, precision)
            data, digest = ts.encode_counts(zoo_decode_count(model, precision, lambda p=precision: _autocast(p, "cpu")))
            (directory / name).write_bytes(data)
            entries[name] = digest
            log(f"{name}: counted")
    if only:  # a partial run keeps the other entries of the existing manifest, when they are of this tracer
        old = json.loads((directory / ts.MANIFEST).read_text()) if (directory / ts.MANIFEST).exists() else {}
        if old.get("code") != ts.tracer_fingerprint() or old.get("torch") != ts._version("torch"):
            raise SystemExit("the shipped set is of another tracer or torch: regenerate all of it (no --only)")
        entries = {**old.get("entries", {}), **entries}
    manifest = {"format": ts.FORMAT, "code": ts.tracer_fingerprint(), "torch": ts._version("torch"),
                "torchvision": ts._version("torchvision"), "entries": dict(sorted(entries.items()))}
    (directory / ts.MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    for stale in directory.glob("*.json.gz"):
        if stale.name not in manifest["entries"]:
            stale.unlink()
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=(), metavar="PRESET",
                        help="regenerate these presets only ('zoo': the validate zoo's cases)")
    parser.add_argument("--dir", type=Path, default=ts.DATA_DIR, help="where to write (default: the package's)")
    args = parser.parse_args(argv)
    manifest = generate(args.dir, args.only)
    total = sum(p.stat().st_size for p in args.dir.glob("*.json.gz"))
    print(f"{len(manifest['entries'])} shapes, {total / 1e6:.2f} MB, code {manifest['code'][:12]}, "
          f"torch {manifest['torch']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
