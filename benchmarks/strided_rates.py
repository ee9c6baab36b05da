"""Elements per SM cycle of index-bound kernels, measured in a torch.profiler run of the validate zoo.

Elementwise ops that TensorIterator cannot run vectorized (a broadcast, non-contiguous or cast operand; ``cat``
along an inner dimension) and reductions across rows are priced by elements, not bytes
(``STRIDED_ELEMENTS_PER_SM_CYCLE`` and ``COLUMN_REDUCE_ELEMENTS_PER_SM_CYCLE`` in advisor/estimator/index_bound.py).
This script is where those figures come from.  For every profiled case of a ``profile-ops.json`` (written by
benchmarks/profile_ops.py on a GPU; the H200 one is committed) it traces the same zoo step, and for each aten op
whose traced calls are mostly index-bound it takes the op's measured device time per step (``top_ops``), removes
the time of its vectorized calls at the probe's copy bandwidth, and divides the index-bound elements by the rest:

    elements per SM cycle = strided elements / (measured s - vectorized bytes / bandwidth) / (SMs x boost clock)

NCHW max pooling (``MAX_POOL_ELEMENTS_PER_SM_CYCLE``) likewise: its threads (output elements forward, input
elements backward) over the op's measured device time; cuDNN's layout transposes by their elements.  It prints one
line per (case, op)
and the median per class.  No end-to-end step time is used.

``attention_tiles`` checks the 16-bit fused attention kernels' cost: each traced attention op's tile and block
FLOPs (``OpCost.tile_flops``, ``block_flops``) at the probe's GEMM rate for that precision, then their exponentials
at ``SFU_EXPONENTIALS_PER_SM_CYCLE``, against its measured device time; the tiles-per-block cost
(``FUSED_ATTENTION_BLOCK_TILES``) is the one that makes the forwards' measured / modelled most alike, and the
backwards' modelled / measured is ``ATTENTION_BACKWARD_RATE``.  ``foreach_fractions``: the optimizer step's
achieved bandwidth over the probe's copy bandwidth, per state dtype (``FOREACH_BANDWIDTH_FRACTION``).

    .venv/bin/python benchmarks/strided_rates.py [PROFILE.json PROBE.json]
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from advisor import estimate, validate  # noqa: E402
from advisor.catalog import get_gpu  # noqa: E402
from advisor.estimator.attention import FUSED_ATTENTION_BLOCK_TILES, SFU_EXPONENTIALS_PER_SM_CYCLE  # noqa: E402
from advisor.precision import master_bytes  # noqa: E402
from advisor.workload.aten_ops import MAX_POOLS, label_op  # noqa: E402
from advisor.workload.costs import compute_bytes  # noqa: E402

RUN = ROOT / "tests/data/gpu-runs/h200-2026-11-28"
#: ops whose device time the profile reports per aten name and whose calls are leaf kernels (no child ops traced)
LEAF_OPS = ("mul", "add", "neg", "div", "cat", "stack", "clone", "_to_copy", "sum")
MIN_SHARE = 0.5  # the index-bound calls must be at least this share of the op's measured time
MIN_ELEMENTS = 1e8  # smaller ops are launch- and tail-bound (a few us per call), not element-bound
#: NCHW max pooling: timed per op (its kernels and the backward's zero fill of the input gradient) against its
#: threads; any size that runs at least a million threads per call (mnist-cnn's pools are small but many-threaded)
POOL_MIN_ELEMENTS = 1e6
#: cuDNN's NCHW <-> NHWC transposes around tensor-core convolutions (kernel names), timed from the profile's top
#: kernels (a lower bound: smaller variants may fall outside the top 25) against the elements the estimator charges
#: them (each conv call's tensors once: advisor.estimator.conv.LAYOUT_SOURCE); cases with at least a millisecond
LAYOUT_KERNELS = ("nchwToNhwc", "nhwcToNchw")
LAYOUT_MIN_S = 1e-3
#: Fused attention ops (16-bit: cuDNN / flash kernels), forward and ``_backward``, timed per case for the tile model
ATTENTION_OPS = ("_scaled_dot_product_cudnn_attention", "_scaled_dot_product_flash_attention")


def _groups(ops: Any, name: str) -> list[Any]:
    """The op groups the trace filed under aten op ``name`` (index-bound or not)."""
    return [o for o in ops if label_op(o.name) == name]


def rates(profile_path: Path, probe_path: Path, card: str = "h200-sxm-141gb") -> dict[str, list[float]]:
    """Elements per SM cycle per class (``elementwise``, ``reduction``) over the profile's cases."""
    spec = get_gpu(card)
    bw = _copy_bandwidth(spec, probe_path)
    cycles = spec.sm_count * spec.boost_clock_mhz * 1e6
    out: dict[str, list[float]] = {"elementwise": [], "reduction": [], "layout_transpose": [],
                                   **{name: [] for name in MAX_POOLS}}
    for case, c, w in _training_cases(profile_path, card):
        measured = {o["name"].removeprefix("aten::"): o for o in case["profile"]["top_ops"]}
        layout_s = sum(k["ms_per_step"] for k in case["profile"]["top_kernels"]
                       if any(n in k["name"] for n in LAYOUT_KERNELS)) / 1e3
        if layout_s >= LAYOUT_MIN_S:
            elements = sum(o.bytes for o in w.ops if o.kind == "conv") / compute_bytes(c.precision)
            per_cycle = elements / layout_s / cycles
            out["layout_transpose"].append(per_cycle)
            print(f"{c.model:12s} {c.label():38s} {'cuDNN layout transposes':32s} {elements / 1e9:6.2f} G elements  "
                  f"measured {layout_s * 1e3:6.2f} ms  -> {per_cycle:4.2f} elements/SM/cycle")
        for name in MAX_POOLS:
            m, groups = measured.get(name), _groups(w.ops, name)
            threads = sum(o.strided_elements for o in groups)
            calls = sum(o.count for o in groups)
            if m is None or not calls or threads / calls < POOL_MIN_ELEMENTS:
                continue
            per_cycle = threads / (m["device_ms_per_step"] / 1e3) / cycles
            out[name].append(per_cycle)
            print(f"{c.model:12s} {c.label():38s} {name:32s} {threads / 1e6:7.1f} M threads  measured "
                  f"{m['device_ms_per_step']:6.3f} ms  -> {per_cycle:4.2f} elements/SM/cycle")
        for name in LEAF_OPS:
            m, groups = measured.get(name), _groups(w.ops, name)
            strided = sum(o.strided_elements for o in groups)
            if m is None or strided < MIN_ELEMENTS:
                continue
            vec_s = sum(o.bytes for o in groups if not o.strided_elements) / bw
            left = m["device_ms_per_step"] / 1e3 - vec_s
            if left < MIN_SHARE * m["device_ms_per_step"] / 1e3:
                continue
            per_cycle = strided / left / cycles
            kind = "reduction" if groups[0].kind == "reduction" else "elementwise"
            out[kind].append(per_cycle)
            print(f"{c.model:12s} {c.label():38s} {name:9s} {strided / 1e9:6.3f} G elements  measured "
                  f"{m['device_ms_per_step']:6.2f} ms  vectorized {vec_s * 1e3:5.2f} ms  -> {per_cycle:4.2f} "
                  f"elements/SM/cycle ({kind})")
    return out


#: The fused kernels' names in the profile's top kernels (a forward whose op falls outside the top 30 ops is timed by
#: its kernel): cuDNN's ``..._flash_fprop`` / ``..._flash_bprop``
FUSED_KERNELS = {"forward": "flash_fprop", "backward": "flash_bprop"}
TILE_SCAN = tuple(i / 20 for i in range(81))  # tiles per block, 0 to 4


def _training_cases(profile_path: Path, card: str) -> Iterator[tuple[dict[str, Any], Any, Any]]:
    """(profiled case, validate case, its estimate's workload on ``card``) for each training case of the profile.

    The decode row is host-bound; its per-op device times are for another question.
    """
    for case in json.loads(profile_path.read_text())["cases"]:
        row = case["row"]
        c = validate.case_from_row(row["model"], row["config"])
        if c.mode != "train":
            continue
        model, kw = validate.estimator_model(c)
        kw.update(batch_size=c.batch_size, precision=c.precision, mode=c.mode, optimizer=c.optimizer,
                  gradient_checkpointing=c.gradient_checkpointing)
        yield case, c, estimate(model, card, calibration="none", **kw).workload


def _copy_bandwidth(spec: Any, probe_path: Path) -> float:
    """The probe's device-copy bandwidth on ``spec`` (bytes/s)."""
    probe = json.loads(probe_path.read_text())
    return spec.memory_bandwidth_bytes_s * next(iter(probe["efficiencies"].values()))["memory_bandwidth"]


def attention_tiles(profile_path: Path, probe_path: Path, card: str = "h200-sxm-141gb") -> dict[str, Any]:
    """16-bit fused attention per profiled case against the tile model, and the fit of its two figures.

    Returns ``{"ops": [(model, label, phase, tile FLOPs, block FLOPs, head dim, measured s, GEMM rate)],
    "block_tiles": the tiles-per-block cost that makes the forwards' measured / modelled time most alike,
    "forward": each forward's measured / modelled time at ``FUSED_ATTENTION_BLOCK_TILES``, "backward": each
    backward's modelled (at the forward's rate) / measured time}``.
    """
    spec = get_gpu(card)
    exp_s = spec.sm_count * spec.boost_clock_mhz * 1e6 * SFU_EXPONENTIALS_PER_SM_CYCLE
    probe = json.loads(probe_path.read_text())
    ops: list[tuple[str, str, str, float, float, int, float, float]] = []
    for case, c, w in _training_cases(profile_path, card):
        if c.precision in ("fp32", "tf32"):
            continue
        dtype = "bf16" if "bf16" in c.precision else "fp16"
        rate = 1e12 * max(k["value"] for k in probe["kernels"]
                          if k["name"] == "matmul" and k["precision"] == dtype and k["value"])
        measured = {o["name"].removeprefix("aten::"): o["device_ms_per_step"] for o in case["profile"]["top_ops"]}
        for op in w.ops:
            if op.kind != "attention" or not op.tile_flops:
                continue
            suffix = "_backward" if op.phase == "backward" else ""
            ms = next((measured[n + suffix] for n in ATTENTION_OPS if n + suffix in measured), None)
            if ms is None:  # outside the top ops: its kernel
                ms = sum(k["ms_per_step"] for k in case["profile"]["top_kernels"]
                         if FUSED_KERNELS[op.phase] in k["name"]) or None
            if ms is not None:
                ops.append((c.model, c.label(), op.phase, op.tile_flops, op.block_flops, op.min_dim or 0, ms / 1e3,
                            rate))

    def modelled(block_tiles: float, t: float, b: float, d: int, r: float) -> float:
        """Seconds at the forward's rate: the tiles' GEMMs at ``r``, then their exponentials."""
        return (t + block_tiles * b) * (1 / r + 1 / (4 * d * exp_s))

    def ratios(block_tiles: float, phase: str) -> list[float]:
        out = []
        for _m, _l, p, t, b, d, s, r in ops:
            if p == phase:
                m = modelled(block_tiles, t, b, d, r)
                out.append(s / m if phase == "forward" else m / s)
        return out

    best = min(TILE_SCAN, key=lambda bt: statistics.pstdev([math.log(x) for x in ratios(bt, "forward")]))
    for m, label, phase, t, b, d, s, r in ops:
        model_s = modelled(FUSED_ATTENTION_BLOCK_TILES, t, b, d, r)
        print(f"{m:12s} {label:38s} {'fused attention ' + phase:32s} {t / 1e9:7.1f} G tile + {b / 1e9:5.1f} G block "
              f"FLOPs  measured {s * 1e3:6.3f} ms, tile model at the forward's rate {model_s * 1e3:6.3f} ms "
              f"({t / s / r:4.2f} of the GEMM rate by tiles alone)")
    return {"ops": ops, "block_tiles": best, "forward": ratios(FUSED_ATTENTION_BLOCK_TILES, "forward"),
            "backward": ratios(FUSED_ATTENTION_BLOCK_TILES, "backward")}


#: Optimizers moving fewer bytes than this per step are launch-bound, not bandwidth-bound (lstm-lm, mnist-cnn)
FOREACH_MIN_BYTES = 1e8


def foreach_fractions(profile_path: Path, probe_path: Path, card: str = "h200-sxm-141gb") -> dict[int, list[float]]:
    """The foreach optimizer kernels' achieved bandwidth over the probe's copy bandwidth, by state element bytes.

    Per profiled training step: the workload's optimizer op bytes (``OPTIMIZER_PASS_BYTES``) over the profile's
    ``Optimizer.step`` device time; ``FOREACH_BANDWIDTH_FRACTION`` is the median per state dtype.
    """
    bw = _copy_bandwidth(get_gpu(card), probe_path)
    out: dict[int, list[float]] = {}
    for case, c, w in _training_cases(profile_path, card):
        step = next((o for o in case["profile"]["top_ops"] if o["name"].startswith("Optimizer.step")), None)
        nbytes = sum(o.bytes for o in w.ops if o.kind == "optimizer")
        if step is None or nbytes < FOREACH_MIN_BYTES:
            continue
        fraction = nbytes / (step["device_ms_per_step"] / 1e3) / bw
        out.setdefault(master_bytes(c.precision), []).append(fraction)
        print(f"{c.model:12s} {c.label():38s} {'foreach optimizer':32s} {nbytes / 1e9:6.2f} GB  measured "
              f"{step['device_ms_per_step']:6.3f} ms  -> {fraction:4.2f} of the copy bandwidth")
    return out


def main(argv: list[str]) -> None:
    profile = Path(argv[0]) if argv else RUN / "profile-ops.json"
    probe = Path(argv[1]) if len(argv) > 1 else RUN / "probe-full.json"
    for kind, vals in rates(profile, probe).items():
        if vals:
            unit = "elements per SM per cycle"
            print(f"{kind}: median {statistics.median(vals):.2f} {unit} "
                  f"(n={len(vals)}, {min(vals):.2f}-{max(vals):.2f})")
    fit = attention_tiles(profile, probe)
    fwd, bwd = fit["forward"], fit["backward"]
    print(f"fused attention: {fit['block_tiles']:.2f} tiles per block make the forwards most alike; at "
          f"{FUSED_ATTENTION_BLOCK_TILES:g} they measured {min(fwd):.2f}-{max(fwd):.2f}x the tile model's time, "
          f"the backwards ran at {statistics.median(bwd):.2f} of the forward's rate ({min(bwd):.2f}-{max(bwd):.2f})")
    for state, vals in sorted(foreach_fractions(profile, probe).items(), reverse=True):
        print(f"foreach optimizer, {state}-byte states: median {statistics.median(vals):.2f} of the copy bandwidth "
              f"(n={len(vals)}, {min(vals):.2f}-{max(vals):.2f})")


if __name__ == "__main__":
    main(sys.argv[1:])
