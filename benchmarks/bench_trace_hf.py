"""How long tracing a 70B-class Hugging Face model on the fake device takes (issue 28: under 10 s).

    .venv/bin/python benchmarks/bench_trace_hf.py [--layers 80] [--seq-len 2048] [--mode infer] [--runs 2]

Builds ``LlamaForCausalLM`` from Llama-3-70B's config (hidden 8192, 64 heads, 8 key/value heads, intermediate 28672,
vocabulary 128256, 80 layers) on the meta device with transformers and traces one step at batch 1 in bf16
(``advisor.trace_module``: no shipped trace, no trace cache).  Prints the seconds spent importing and building the
module (once) and the min and median of ``--runs`` traces.  Needs the ``hf`` extra (transformers).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=80)
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--mode", choices=("train", "infer"), default="infer")
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    import torch
    import transformers

    from advisor.workload.trace import trace_module

    cfg = transformers.LlamaConfig(vocab_size=128256, hidden_size=8192, intermediate_size=28672,
                                   num_hidden_layers=args.layers, num_attention_heads=64, num_key_value_heads=8,
                                   max_position_embeddings=8192, rope_theta=500000.0, rms_norm_eps=1e-5)
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(cfg)
        tokens = torch.empty(1, args.seq_len, dtype=torch.long)
    built = time.perf_counter() - t0
    times = []
    for _ in range(args.runs):
        t1 = time.perf_counter()
        w = trace_module(model, (tokens,), mode=args.mode, precision="bf16")
        times.append(time.perf_counter() - t1)
    print(f"Llama-3-70B config, {args.layers} layers, seq {args.seq_len}, {args.mode}: import + build {built:.2f} s, "
          f"trace min {min(times):.2f} s, median {statistics.median(times):.2f} s ({args.runs} runs, "
          f"{len(w.ops)} op groups; transformers {transformers.__version__})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
