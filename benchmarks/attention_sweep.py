"""Fused attention timed over sequence lengths, head dims and causality, beside the estimator's tile model.

    python benchmarks/attention_sweep.py --out attention-sweep.json [--calibration PROBE.json] [--gpu CARD]

The tile model (``advisor.workload.aten_ops.fused_attention_work``: 128 x 128 tiles, causal diagonals, a fixed
cost per query block; each tile's GEMMs at the card's GEMM rate, then its exponentials on the special-function
units) was fitted on the H200 profile's five validate cases, all at head dim 64.  This sweep is its check where
that profile has nothing: head dim 128, sequence lengths that end inside a tile (197, 300) and long ones (4096),
causal and not, bf16.  Per configuration (a fixed number of tokens, 16,384, so the work grows with the sequence
length) it times ``F.scaled_dot_product_attention`` forward and forward+backward with CUDA events (median of
``--iters`` after warm-up; whatever kernel SDPA picks on this card) and puts the estimate beside it: the traced
call's ``attention`` class time from ``estimate()`` on ``--gpu`` (this machine's card by default), calibrated
from ``--calibration`` (a probe JSON; gpu_session.sh passes its own full probe).  It prints one line per
configuration and the median |measured / predicted - 1| of each pass; the file holds every row.  On a CPU it is a
dry run (tiny shapes, fp32, CPU times; the predictions are still the GPU's) so that the script is tested.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TOKENS = 16_384  # batch x sequence length of every configuration
HIDDEN = 2048  # heads x head dim
SEQ_LENS = (197, 512, 1024, 2048, 4096)
HEAD_DIMS = (64, 128)


def _module(causal: bool) -> Any:
    import torch
    import torch.nn.functional as F

    class Attend(torch.nn.Module):
        """One SDPA call on (batch, heads, seq, head dim) inputs; a scale parameter so that it trains."""

        def __init__(self) -> None:
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(()))

        def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            return F.scaled_dot_product_attention(q * self.scale, k, v, is_causal=causal)

    return Attend()


def predicted_s(gpu: str, calibration: Any, b: int, h: int, s: int, d: int, causal: bool,
                precision: str) -> tuple[float, float]:
    """(forward, forward + backward) seconds of the estimate's ``attention`` class for one SDPA call."""
    import torch

    from advisor import estimate

    out = []
    for mode in ("infer", "train"):
        with torch.device("meta"):
            x = torch.empty(b, h, s, d)
        e = estimate(_module(causal), gpu, example_inputs=(x, x, x), batch_size=b, mode=mode, precision=precision,
                     optimizer="sgd" if mode == "train" else None, calibration=calibration, runtime="graph")
        out.append(float(e.time.by_class_s.get("attention", 0.0)))
    return out[0], out[1]


def measured_s(device: str, dtype: Any, b: int, h: int, s: int, d: int, causal: bool,
               iters: int) -> tuple[float, float]:
    """(forward, forward + backward) seconds of one SDPA call on ``device``: medians of ``iters`` timed runs."""
    import torch
    import torch.nn.functional as F

    q, k, v = (torch.randn(b, h, s, d, device=device, dtype=dtype, requires_grad=True) for _ in range(3))
    grad = torch.randn(b, h, s, d, device=device, dtype=dtype)

    def fwd() -> None:
        with torch.no_grad():
            F.scaled_dot_product_attention(q, k, v, is_causal=causal)

    def train() -> None:
        F.scaled_dot_product_attention(q, k, v, is_causal=causal).backward(grad)

    times = []
    for fn in (fwd, train):
        for _ in range(2):
            fn()
        runs = []
        for _ in range(iters):
            if device == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                runs.append(start.elapsed_time(end) / 1e3)
            else:
                t0 = time.perf_counter()
                fn()
                runs.append(time.perf_counter() - t0)
        times.append(statistics.median(runs))
    return times[0], times[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="the JSON file to write")
    parser.add_argument("--calibration", default="none", help="a probe JSON for the predictions (default: none)")
    parser.add_argument("--gpu", help="catalog card for the predictions (default: this machine's GPU, else h100)")
    parser.add_argument("--iters", type=int, default=10, help="timed runs per pass (default 10)")
    args = parser.parse_args(argv)

    import torch

    calibration = args.calibration
    if calibration != "none" and not Path(calibration).exists():
        print(f"{calibration} not found: predictions from the spec sheet")
        calibration = "none"
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    gpu = args.gpu or (torch.cuda.get_device_name(0) if cuda else "h100-sxm5-80gb")
    dtype, precision = (torch.bfloat16, "bf16") if cuda else (torch.float32, "bf16")
    seq_lens, head_dims, tokens, hidden = (SEQ_LENS, HEAD_DIMS, TOKENS, HIDDEN) if cuda else ((64, 130), (16,), 260, 32)
    rows: list[dict[str, Any]] = []
    doc = {"device": torch.cuda.get_device_name(0) if cuda else "cpu (dry run)", "torch": torch.__version__,
           "gpu_predicted": gpu, "calibration": calibration, "rows": rows}
    for d in head_dims:
        for s in seq_lens:
            for causal in (False, True):
                b, h = max(1, tokens // s), hidden // d
                meas = measured_s(device, dtype, b, h, s, d, causal, args.iters if cuda else 2)
                if cuda:
                    torch.cuda.empty_cache()  # the call's tensors are gone: hand their memory back
                pred = predicted_s(gpu, calibration, b, h, s, d, causal, precision)
                rows.append({"batch": b, "heads": h, "seq_len": s, "head_dim": d, "causal": causal,
                             "measured_fwd_s": meas[0], "measured_fwd_bwd_s": meas[1],
                             "predicted_fwd_s": pred[0], "predicted_fwd_bwd_s": pred[1]})
                print(f"s {s:5d} d {d:3d} causal {causal!s:5s} b {b:3d} h {h:2d}: forward {meas[0] * 1e3:8.3f} ms "
                      f"(predicted {pred[0] * 1e3:8.3f}), forward+backward {meas[1] * 1e3:8.3f} ms "
                      f"(predicted {pred[1] * 1e3:8.3f})")
                Path(args.out).write_text(json.dumps(doc, indent=1))  # after every row: a lease may end
    for key in ("fwd", "fwd_bwd"):
        errs = [abs(r[f"measured_{key}_s"] / r[f"predicted_{key}_s"] - 1) for r in rows if r[f"predicted_{key}_s"]]
        if errs:
            print(f"{key}: median |measured / predicted - 1| {statistics.median(errs):.1%} over {len(errs)} rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
