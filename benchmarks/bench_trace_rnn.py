"""How long tracing a user's recurrent model takes (issue 28: an LSTM-heavy model should trace in <= 5 s).

    .venv/bin/python benchmarks/bench_trace_rnn.py [--seq-len 256] [--runs 3] [--mode train] [--unrolled]

Traces a user's ``nn.Module`` (``advisor.trace_module``: no preset, so neither the shipped traces nor the trace
cache are involved) that holds a 2-layer ``nn.LSTM`` (Embedding 1000x256 -> LSTM 256->512 x 2 -> Linear 1000, batch
8), built on the meta device.  The tracer runs a recurrent layer on ATen's per-time-step path (see
``advisor.workload.trace_blocks.RecurrentFiling``) for a few time steps and extrapolates the rest
(``advisor.workload.trace_rnn``); ``--unrolled`` times the unrolled trace instead (its cost grows with seq_len x
layers).  Prints min and median wall seconds of ``--runs`` traces and the recurrent ops.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def lstm_lm(seq_len: int) -> tuple[object, object]:
    """The model (on the meta device) and its example input."""
    import torch
    from torch import nn

    class LstmLM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(1000, 256)
            self.lstm = nn.LSTM(256, 512, num_layers=2, batch_first=True)
            self.out = nn.Linear(512, 1000)

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            return self.out(self.lstm(self.embed(tokens))[0])

    with torch.device("meta"):
        return LstmLM(), torch.empty(8, seq_len, dtype=torch.long)


def main(argv: list[str] | None = None) -> int:
    from advisor.workload.trace import trace_module

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mode", choices=("train", "infer"), default="train")
    parser.add_argument("--unrolled", action="store_true", help="trace every time step (no extrapolation)")
    args = parser.parse_args(argv)
    if args.unrolled:
        from advisor.workload import trace

        trace.has_recurrent = lambda _module: False  # type: ignore[assignment]
    times = []
    for _ in range(args.runs):
        module, x = lstm_lm(args.seq_len)
        t0 = time.perf_counter()
        w = trace_module(module, x, mode=args.mode)
        times.append(time.perf_counter() - t0)
    rnn = [op for op in w.ops if op.kind == "recurrent"]
    print(f"seq_len {args.seq_len}, {args.mode}: min {min(times):.2f} s, median {statistics.median(times):.2f} s "
          f"({args.runs} runs); recurrent ops {[(op.phase, op.count, op.serial_steps) for op in rnn]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
