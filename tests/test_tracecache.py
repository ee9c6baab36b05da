"""The on-disk trace cache (issue 16, item 7): a repeated run of a traced preset skips torch and the trace."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from advisor.workload import from_preset, tracecache

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(tracecache.ENV_CACHE_DIR, str(tmp_path))
    return tmp_path / "traces"


@pytest.fixture(autouse=True)
def _no_shipped_traces(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # these tests are about the user's cache: mnist-cnn is traced here, not read from advisor.workload.traces
    from advisor.workload import trace_presets, trace_shipped

    monkeypatch.setattr(trace_shipped, "shipped_trace", lambda *a, **k: None)
    trace_presets._traces.cache_clear()
    trace_presets._preset_ops.cache_clear()
    yield
    trace_presets._traces.cache_clear()
    trace_presets._preset_ops.cache_clear()


def _count_traces(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    from advisor.workload import trace_presets as trace

    calls: list[int] = []
    real = trace.preset_workload

    def counting(preset, **kw):  # type: ignore[no-untyped-def]
        calls.append(kw["batch_size"])
        return real(preset, **kw)

    monkeypatch.setattr(trace, "preset_workload", counting)
    return calls


def test_second_build_comes_from_disk_and_is_identical(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_traces(monkeypatch)
    kw = dict(batch_size=8, image_size=28, precision="fp32", optimizer="adam")
    first = from_preset("mnist-cnn", **kw)
    assert calls == [8] and len(list(cache.glob("preset-*.json"))) == 1
    second = from_preset("mnist-cnn", **kw)
    assert calls == [8]  # not traced again
    assert second.ops == first.ops and second.params == first.params
    assert second.calls == first.calls and second.calls  # the call order the launch queue replays, as tuples
    assert second.activation_bytes == first.activation_bytes and second.assumptions == first.assumptions
    # other batch sizes go through the cache too
    assert second.with_batch_size(16).batch_size == 16 and calls == [8, 16]
    assert from_preset("mnist-cnn", **{**kw, "batch_size": 16}).ops == second.with_batch_size(16).ops
    assert calls == [8, 16]
    # a different option is a different build
    from_preset("mnist-cnn", **{**kw, "precision": "amp-bf16"})
    assert calls == [8, 16, 8]


def test_code_change_or_corrupt_file_means_trace_again(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_traces(monkeypatch)
    kw = dict(batch_size=4, image_size=28, precision="fp32", optimizer="sgd")
    from_preset("mnist-cnn", **kw)
    (path,) = cache.glob("preset-*.json")
    path.write_text("{not json")
    from_preset("mnist-cnn", **kw)
    assert calls == [4, 4]
    assert json.loads(path.read_text().split("\n", 1)[1])["name"] == "mnist-cnn"  # rewritten whole
    monkeypatch.setattr(tracecache, "code_fingerprint", lambda: "another version of the tracer")
    from_preset("mnist-cnn", **kw)
    assert calls == [4, 4, 4]


def test_cache_can_be_turned_off_and_an_unwritable_dir_costs_only_time(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_traces(monkeypatch)
    monkeypatch.setenv(tracecache.ENV_CACHE_DIR, "off")
    kw = dict(batch_size=4, image_size=28, precision="fp32", optimizer="sgd")
    from_preset("mnist-cnn", **kw)
    from_preset("mnist-cnn", **kw)
    assert calls == [4, 4]
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache directory should be")
    monkeypatch.setenv(tracecache.ENV_CACHE_DIR, str(blocker))
    assert from_preset("mnist-cnn", **kw).name == "mnist-cnn"


def test_progress_hook_runs_only_while_tracing(cache: Path) -> None:
    import contextlib

    seen: list[str] = []

    @contextlib.contextmanager
    def spy(message: str):  # type: ignore[no-untyped-def]
        seen.append(message)
        yield

    tracecache.set_progress(spy)
    try:
        kw = dict(batch_size=2, image_size=28, precision="fp32", optimizer="sgd")
        from_preset("mnist-cnn", **kw)
        from_preset("mnist-cnn", **kw)
    finally:
        tracecache.set_progress(None)
    assert len(seen) == 1 and "tracing mnist-cnn" in seen[0]


@pytest.mark.slow  # ~8 s: two fresh interpreters, the first traces (torch import); the point is the second does not
def test_repeated_cli_run_does_not_import_torch(tmp_path: Path) -> None:
    # a shape the package does not ship (lstm-lm ships at its default 20 tokens: advisor.workload.trace_shipped)
    env = {**os.environ, tracecache.ENV_CACHE_DIR: str(tmp_path), "GPU_ADVISOR_HOME": str(tmp_path)}
    code = ("import sys; from advisor.cli import main; "
            "rc = main(['estimate', '--model', 'lstm-lm', '--seq-len', '12', '--gpu', 'a100-sxm4-80gb', "
            "'--batch-size', '64', "
            "'--calibration', 'none', '--json']); "
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', file=sys.stderr); sys.exit(rc)")
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env,
                           timeout=120) for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr[-2000:]
    assert "TORCH" in runs[0].stderr.split() and "NO-TORCH" in runs[1].stderr.split()
    assert json.loads(runs[0].stdout) == json.loads(runs[1].stdout)


def _entry(path: Path) -> tuple[bytes, bytes]:
    head, _, body = path.read_bytes().partition(b"\n")
    return head, body


@pytest.mark.parametrize("damage", ["edited", "nan", "inf", "negative", "nested", "garbage-op", "foreign", "binary",
                                    "string-figure", "bad-call"])
def test_a_damaged_entry_is_traced_again_and_rewritten_never_trusted(damage: str, cache: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # issue 29 item 5: an edited cached trace turned resnet50's 0.0285 s step into 2.72 s; NaN flowed through; a
    # nested entry crashed every run.  Each damage below either fails the checksum or a figure check.
    calls = _count_traces(monkeypatch)
    kw = dict(batch_size=8, precision="fp32", optimizer="sgd")
    good = from_preset("mnist-cnn", **kw)
    (path,) = cache.glob("preset-*.json")
    head, body = _entry(path)
    doc = json.loads(body)
    resealed = True  # a valid header for the damaged body: only the figure checks stand in the way
    heavy = next(i for i, op in enumerate(doc["ops"]) if op["flops"] > 0)
    if damage == "edited":
        doc["ops"][heavy]["flops"] *= 1000
        resealed = False  # the checksum no longer matches
    elif damage == "nan":
        doc["ops"][0]["bytes"] = float("nan")
    elif damage == "inf":
        doc["activation_bytes"] = float("inf")
    elif damage == "negative":
        doc["ops"][heavy]["flops"] = -5.0
    elif damage == "nested":
        doc = None
    elif damage == "garbage-op":
        doc["ops"][0] = [[[{"flops": 1}]]]
    elif damage == "string-figure":
        doc["params"] = "93322"
    elif damage == "bad-call":
        doc["calls"][0] = [10**6, 1.0]
    if damage == "nested":
        new_body = b"[" * 100_000 + b"]" * 100_000
    elif damage == "binary":
        new_body = bytes(range(256)) * 10
    elif damage == "foreign":  # a valid entry of another build under this one's name
        other = from_preset("mnist-cnn", **{**kw, "batch_size": 16})
        assert other.batch_size == 16
        (other_path,) = [p for p in cache.glob("preset-*.json") if p != path]
        head, new_body = _entry(other_path)
        resealed = False
    else:
        new_body = json.dumps(doc).encode()  # NaN/Infinity written as the bare words Python's json allows
    if resealed:
        head = tracecache._header(path.stem, new_body).rstrip(b"\n")
    path.write_bytes(head + b"\n" + new_body)
    tracecache._MEMO.clear()
    n = len(calls)
    again = from_preset("mnist-cnn", **kw)
    assert len(calls) == n + 1  # built again, not read
    assert again.ops == good.ops and again.activation_bytes == good.activation_bytes
    assert _entry(path)[1] == body  # rewritten as it was
    tracecache._MEMO.clear()
    from_preset("mnist-cnn", **kw)
    assert len(calls) == n + 1  # and the rewritten file is used


def test_the_same_process_reuses_the_workload_it_read(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_traces(monkeypatch)
    kw = dict(batch_size=8, precision="fp32", optimizer="sgd")
    first = from_preset("mnist-cnn", **kw)
    assert from_preset("mnist-cnn", **kw) is first and calls == [8]
    (path,) = cache.glob("preset-*.json")
    path.unlink()  # the cache cleared: built again
    assert from_preset("mnist-cnn", **kw) is not first and calls == [8, 8]
