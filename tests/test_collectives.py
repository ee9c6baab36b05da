"""The collective-communication probe: nccl-tests' bandwidth formulas, stragglers, and a real gloo run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from advisor.errors import AdvisorError
from advisor.probing.collectives import (
    OPS,
    CollectiveResult,
    CollectivesReport,
    DistEnv,
    RankInfo,
    algbw_bytes_s,
    bus_factor,
    busbw_bytes_s,
    find_stragglers,
    run_collectives,
)

ROOT = Path(__file__).resolve().parent.parent
TORCHRUN = Path(sys.executable).with_name("torchrun")


@pytest.mark.parametrize(("op", "n", "factor"), [
    ("all_reduce", 8, 2 * 7 / 8), ("all_reduce", 2, 1.0), ("all_reduce", 1, 0.0),
    ("all_gather", 8, 7 / 8), ("reduce_scatter", 4, 3 / 4), ("all_to_all", 16, 15 / 16),
    ("broadcast", 8, 1.0), ("broadcast", 1, 1.0),
])
def test_bus_factors_are_nccl_tests_definitions(op: str, n: int, factor: float) -> None:
    assert bus_factor(op, n) == pytest.approx(factor)


def test_busbw_is_algbw_times_the_factor() -> None:
    # 1 GB all-reduced across 4 ranks in 10 ms: algbw 100 GB/s, busbw 150 GB/s
    assert algbw_bytes_s(1e9, 0.01) == pytest.approx(1e11)
    assert busbw_bytes_s("all_reduce", 1e9, 0.01, 4) == pytest.approx(1.5e11)
    r = CollectiveResult("all_gather", 2**30, 0.02, 8, link_gbs=450.0)
    assert r.algbw_gbs == pytest.approx(2**30 / 0.02 / 1e9)
    assert r.busbw_gbs == pytest.approx(r.algbw_gbs * 7 / 8)
    assert r.fraction_of_link == pytest.approx(r.busbw_gbs / 450.0)
    d = r.to_dict()
    assert d["bus_factor"] == pytest.approx(7 / 8) and d["busbw_gbs"] == pytest.approx(r.busbw_gbs)


def test_bad_inputs_are_advisor_errors() -> None:
    with pytest.raises(AdvisorError, match="unknown collective 'allreduce'"):
        bus_factor("allreduce", 2)
    with pytest.raises(AdvisorError, match="world size"):
        bus_factor("all_reduce", 0)
    with pytest.raises(AdvisorError, match="time must be > 0"):
        algbw_bytes_s(1.0, 0.0)


def test_stragglers_are_more_than_5_percent_below_the_median() -> None:
    assert find_stragglers({0: 100.0, 1: 100.0, 2: 94.0, 3: 101.0}) == [2]
    assert find_stragglers({0: 100.0, 1: 100.0, 2: 95.5}) == []  # within 5%
    assert find_stragglers({0: 100.0}) == []
    assert find_stragglers({0: 100.0, 1: None, 2: 50.0, 3: 100.0}) == [2]


def test_dist_env_from_torchrun_variables() -> None:
    assert DistEnv.from_environ({}) == DistEnv(0, 1, 0, False)
    assert DistEnv.from_environ({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1"}) == DistEnv(3, 8, 1, True)
    with pytest.raises(AdvisorError, match="RANK"):
        DistEnv.from_environ({"RANK": "x", "WORLD_SIZE": "2"})
    with pytest.raises(AdvisorError):
        DistEnv.from_environ({"RANK": "2", "WORLD_SIZE": "2"})


def test_report_goes_to_the_store_without_a_catalog_id() -> None:
    from advisor.store import HistoryStore

    fleet = tuple(RankInfo(r, r, "node0", f"cuda:{r}", "NVIDIA H100 80GB HBM3", "h100-sxm5-80gb", t)
                  for r, t in enumerate((700.0, 705.0, 600.0, 702.0)))
    report = CollectivesReport("nccl", 4, "torchrun", "cuda",
                               (CollectiveResult("all_reduce", 2**28, 0.004, 4, (0.004,) * 4, 450.0),), fleet,
                               timestamp="2026-11-23T09:00:00+00:00")
    assert report.stragglers == [2]
    doc = report.to_dict()
    assert doc["peak_busbw_gbs"]["all_reduce"] == pytest.approx(2**28 / 0.004 * 1.5 / 1e9)
    assert doc["peak_busbw_gbs"]["broadcast"] is None
    store = HistoryStore()
    saved = store.save_probe(report.to_probe_result())
    record = store.list_probes(limit=1)[0]
    assert record.id == saved and record.catalog_id is None  # never shadows a card's calibration probe
    assert record.result().kernels[0].name == "collective_all_reduce"
    assert store.latest_probe("h100-sxm5-80gb") is None


def test_single_process_runs_as_world_of_one() -> None:
    report = run_collectives(quick=True, sizes=(4096, 65536), ops=("all_reduce", "broadcast"), iters=2, reps=1,
                             env=DistEnv(0, 1, 0, False), backend="gloo")
    assert report is not None and report.world_size == 1 and report.launcher == "single process"
    assert any("single process" in n for n in report.notes)
    by_op = {(r.op, r.size_bytes): r for r in report.results}
    assert set(by_op) == {("all_reduce", 4096), ("all_reduce", 65536), ("broadcast", 4096), ("broadcast", 65536)}
    assert by_op["all_reduce", 4096].busbw_gbs == 0.0  # 2(n-1)/n = 0 for one rank
    assert by_op["broadcast", 65536].time_s > 0
    assert len(report.fleet) == 1 and report.fleet[0].matmul_tflops > 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_torchrun_two_ranks_with_gloo(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "MASTER_PORT": str(port), "GPU_ADVISOR_HOME": str(tmp_path), "OMP_NUM_THREADS": "1",
           "CUDA_VISIBLE_DEVICES": ""}
    t0 = time.perf_counter()
    proc = subprocess.run([str(TORCHRUN), "--nproc-per-node", "2", "--master-port", str(port), "-m", "advisor",
                           "probe", "--collectives", "--quick", "--json"],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)  # exactly one JSON document: rank 1 printed nothing
    assert doc["kind"] == "collectives" and doc["backend"] == "gloo" and doc["world_size"] == 2
    assert doc["launcher"] == "torchrun"
    assert [f["rank"] for f in doc["fleet"]] == [0, 1]
    assert {f["local_rank"] for f in doc["fleet"]} == {0, 1}
    assert {r["op"] for r in doc["results"]} == set(OPS)
    for r in doc["results"]:
        if r["skipped"]:
            assert "gloo" in r["skipped"]
            continue
        assert len(r["rank_times_s"]) == 2 and r["time_s"] == max(r["rank_times_s"])
        assert r["algbw_gbs"] == pytest.approx(r["size_bytes"] / r["time_s"] / 1e9)
        assert r["busbw_gbs"] == pytest.approx(r["algbw_gbs"] * bus_factor(r["op"], 2))
    from advisor.store import HistoryStore

    saved = HistoryStore(tmp_path / "history.sqlite3").list_probes()
    assert [p.id for p in saved] == [doc["saved_id"]]
    assert elapsed < 90  # CI budget is ~30 s on an idle 2-core runner; leave room for a loaded one


@pytest.mark.gpu
def test_p2p_matrix_on_several_gpus() -> None:
    import torch

    from advisor.probing.collectives import p2p_matrix

    if torch.cuda.device_count() < 2:
        pytest.skip("needs two or more GPUs in this process")
    m = p2p_matrix(size_bytes=16 * 2**20, reps=2)
    n = torch.cuda.device_count()
    assert len(m["copy_gbs"]) == n and all(m["copy_gbs"][i][j] > 0 for i in range(n) for j in range(n) if i != j)
