"""Per-op bytes of one panel row of benchmarks/conformance.py: the traced module's ops against the closed form's.

Where a conformance row's bytes differ, this lists both op lists by bytes (the optimizer and graph-only ops left
out), in MB and in bytes per token x hidden element, to find the kernels one side misses.

    PYTHONPATH=. .venv/bin/python benchmarks/conformance_ops.py train amp-bf16 [llama]
    PYTHONPATH=. .venv/bin/python benchmarks/conformance_ops.py infer bf16 gemma

Needs torch and transformers (the ``dev`` extra).
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import conformance


def by_op(w: Any) -> collections.Counter[tuple[str, str, str]]:
    """Bytes per (phase, op name without its shape, kind), index-bound calls marked ``[s]``."""
    out: collections.Counter[tuple[str, str, str]] = collections.Counter()
    for op in w.ops:
        if op.phase == "optimizer" or op.runtime == "graph":
            continue
        name = op.name.split("[")[0] + ("[s]" if "strided" in op.name else "")
        out[(op.phase, name, op.kind)] += op.bytes
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("train", "infer"))
    parser.add_argument("precision")
    parser.add_argument("model", nargs="?", default="llama", choices=sorted(conformance.PANEL))
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args(argv)
    cfg = conformance.PANEL[args.model]
    closed = conformance.closed_form(cfg, args.mode, args.precision)
    if closed is None:
        print(f"error: {args.model} has no closed form", file=sys.stderr)
        return 2
    module = conformance.traced(cfg, args.mode, args.precision)
    unit = conformance.BATCH * conformance._seq(cfg) * float(closed.arch["hidden_size"])
    for label, w in (("traced", module), ("closed", closed)):
        ops = by_op(w)
        print(f"{label} {sum(ops.values()) / 1e9:.3f} GB")
        for (phase, name, kind), nbytes in ops.most_common(args.top):
            print(f"   {phase:9s} {name[:45]:45s} {kind:11s} {nbytes / 1e6:9.1f} MB {nbytes / unit:8.1f} B/(tok*h)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
