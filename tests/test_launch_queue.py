"""PyTorch eager's launch queue, replayed call by call on a traced step (``advisor.estimator.host.queue_replay``).

The host issues each call in order; the GPU runs it once issued and once the kernel before it is done.  Checked by
hand on small sequences, then on a traced module: its calls are recorded in dispatch order and the estimate replays
them (analytic workloads, which have no order, keep the per-phase floor).
"""

from __future__ import annotations

import collections
import dataclasses

import pytest

from advisor import estimate
from advisor.estimator import efficiency, profiles
from advisor.estimator.host import QUEUE_SOURCE, queue_replay
from advisor.estimator.ops import PHASES, PreparedOp

FWD, BWD, OPT = PHASES.index("forward"), PHASES.index("backward"), PHASES.index("optimizer")
EFF = dataclasses.replace(profiles.defaults_for("Hopper"), host_op_s=1e-3, host_launch_s=0.0)
SHARE = efficiency.TRACED_HOST_BACKWARD_FRACTION  # a traced step's backward dispatch share


def _op(phase: int, kernel: bool = True) -> PreparedOp:
    """A prepared op of one call in ``phase`` (bytes > 0: it launches a kernel)."""
    return PreparedOp(0.0, 1.0 if kernel else 0.0, 1, 3, 0, phase, 0, None, 0.0, 0.0, 0, 0.0, 0.0, "")


def test_the_gpu_waits_for_the_host_only_where_the_host_is_behind() -> None:
    ops = [_op(FWD), _op(FWD), _op(FWD)]
    calls = [(0, 1.0), (1, 1.0), (2, 1.0)]
    gpu = [5e-3, 0.1e-3, 0.1e-3]  # one long kernel, then two short ones the host issues 1 ms apart
    phases = [sum(gpu)] + [0.0] * (len(PHASES) - 1)
    host = [3e-3] + [0.0] * (len(PHASES) - 1)
    out, exposed = queue_replay(calls, ops, gpu, phases, host, EFF, 0.0, SHARE)
    # first kernel issued at 1 ms, runs to 6 ms; the host has issued the rest by 3 ms: no wait after the first
    assert out[FWD] == pytest.approx(6.2e-3)
    assert exposed == pytest.approx(1e-3)  # only the first call's issue
    short_first = [0.1e-3, 0.1e-3, 5e-3]
    out, exposed = queue_replay(calls, ops, short_first, phases, host, EFF, 0.0, SHARE)
    assert out[FWD] == pytest.approx(8e-3)  # the long kernel can only start once issued at 3 ms
    assert out[FWD] > max(sum(short_first), sum(host))  # more than either total: a per-phase floor misses it


def test_views_cost_the_host_but_launch_nothing() -> None:
    ops = [_op(FWD, kernel=False), _op(FWD)]
    phases = [1e-3] + [0.0] * (len(PHASES) - 1)
    host = [2e-3] + [0.0] * (len(PHASES) - 1)
    out, _ = queue_replay([(0, 1.0), (1, 1.0)], ops, [0.0, 1e-3], phases, host, EFF, 0.0, SHARE)
    assert out[FWD] == pytest.approx(3e-3)  # the view's 1 ms of dispatch, then the kernel's, then its 1 ms


def test_the_optimizer_overlaps_backward_unless_a_grad_scaler_syncs() -> None:
    ops = [_op(FWD), _op(BWD)]
    calls = [(0, 1.0), (1, 1.0)]
    gpu = [1e-3, 10e-3]
    phases = [1e-3, 10e-3, 1e-3] + [0.0] * (len(PHASES) - 3)
    host = [1e-3, 1e-3, 4e-3] + [0.0] * (len(PHASES) - 3)
    out, _ = queue_replay(calls, ops, gpu, phases, host, EFF, 0.0, SHARE)
    assert sum(out) == pytest.approx(13e-3, rel=0.02)  # the optimizer's 4 ms of host hide under backward's GPU
    synced, exposed = queue_replay(calls, ops, gpu, phases, host, EFF, 0.0, SHARE, sync_before=[OPT])
    assert sum(synced) == pytest.approx(12e-3 + 4e-3, rel=0.02)  # .item() first: its host runs on an idle GPU
    assert exposed == pytest.approx(sum(synced) - sum(phases))


def test_a_traced_step_records_its_calls_in_order() -> None:
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8))
    w = estimate(model, "h100-sxm5-80gb", example_inputs=(torch.randn(16, 64),), precision="fp32").workload
    assert w.calls and all(0 <= i < len(w.ops) for i, _ in w.calls)
    shares: dict[int, float] = collections.defaultdict(float)
    for i, share in w.calls:
        shares[i] += share
    assert all(s == pytest.approx(1.0) for s in shares.values())  # each op's time is split over its calls
    counts = collections.Counter(i for i, _ in w.calls)
    assert all(counts[i] == w.ops[i].count for i in counts)
    phases = [w.ops[i].phase for i, _ in w.calls]
    assert phases.index("backward") > max(k for k, p in enumerate(phases) if p == "forward")
    assert "optimizer" not in phases  # costed analytically, after the calls


def test_traced_estimates_replay_the_queue_and_presets_keep_the_floor() -> None:
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8))
    traced = estimate(model, "h100-sxm5-80gb", example_inputs=(torch.randn(16, 64),), precision="fp32")
    assert QUEUE_SOURCE in traced.assumptions
    assert traced.time.step_s >= traced.time.host_s  # never below the exposed host time
    analytic = estimate("gpt2", "h100-sxm5-80gb", batch_size=4, seq_len=256)
    assert QUEUE_SOURCE not in analytic.assumptions
    graph = estimate(model, "h100-sxm5-80gb", example_inputs=(torch.randn(16, 64),), precision="fp32",
                     runtime="graph")
    assert QUEUE_SOURCE not in graph.assumptions and graph.time.step_s < traced.time.step_s


def test_a_traced_step_with_ops_of_another_runtime_says_the_queue_was_not_replayed() -> None:
    """The launch-queue replay is decided explicitly: where prepare_ops leaves ops out, the floor rule prices the
    host side and an assumption says so, rather than falling back silently."""
    torch = pytest.importorskip("torch")
    from advisor.catalog import get_gpu
    from advisor.estimator import estimate_workload

    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8))
    w = estimate(model, "h100-sxm5-80gb", example_inputs=(torch.randn(16, 64),), precision="fp32").workload
    graph_only = dataclasses.replace(w.ops[0], runtime="graph")
    mixed = dataclasses.replace(w, ops=[graph_only, *w.ops[1:]])
    e = estimate_workload(mixed, get_gpu("h100-sxm5-80gb"), calibration=None)
    assert QUEUE_SOURCE not in e.assumptions
    assert any(a.startswith("launch-queue replay not run: 1 of the traced step's") for a in e.assumptions)
    whole = estimate_workload(w, get_gpu("h100-sxm5-80gb"), calibration=None)
    assert QUEUE_SOURCE in whole.assumptions and not any("replay not run" in a for a in whole.assumptions)
