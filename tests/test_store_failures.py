"""A history store that cannot be read or written loses no result (issue 16, item 8); one bad row, a newer schema,
a lock, a full disk or read-only media each says what happened and breaks no other command (issue 29)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from advisor.calibration import clear_calibration_cache
from advisor.cli import main
from advisor.errors import StoreError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def corrupt_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "history.sqlite3").write_text("this is not an SQLite database, and it is long enough to tell\n")
    monkeypatch.setenv("GPU_ADVISOR_HOME", str(tmp_path))
    clear_calibration_cache()
    yield tmp_path
    clear_calibration_cache()


def test_estimate_with_a_corrupt_store_says_it_could_not_be_read(corrupt_home: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["estimate", "--model", "gpt2", "--gpu", "a100-sxm4-80gb", "--json"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert any("history store could not be read" in a for a in doc["assumptions"])
    assert not any(a.startswith("no probe of this card found") for a in doc["assumptions"])
    assert "warning: the history store could not be read" in captured.err and "corrupt" in captured.err


def test_estimate_without_a_store_still_says_no_probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from advisor.api import estimate

    monkeypatch.setenv("GPU_ADVISOR_HOME", str(tmp_path))
    clear_calibration_cache()
    e = estimate("gpt2", "a100-sxm4-80gb")
    assert "no probe of this card found: default efficiencies" in e.assumptions


@pytest.mark.slow  # ~10 s: real (tiny) training steps on the CPU in a subprocess, as a user runs validate
def test_validate_with_a_corrupt_store_prints_results_warns_and_exits_0(tmp_path: Path) -> None:
    (tmp_path / "history.sqlite3").write_text("this is not an SQLite database, and it is long enough to tell\n")
    env = {**os.environ, "GPU_ADVISOR_HOME": str(tmp_path), "CUDA_VISIBLE_DEVICES": ""}
    argv = [sys.executable, "-m", "advisor", "validate", "--quick", "--models", "mnist-cnn", "--warmup", "0",
            "--iters", "1", "--json"]
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)  # the results, whole
    assert len(doc["rows"]) == 2 and doc["saved_id"] is None
    err = " ".join(proc.stderr.split())
    assert "warning: results not saved" in err and "corrupt" in err
    assert "error:" not in err


# --- issue 29, items 1 and 8: one bad row never breaks a command; errors say what happened ---------------------------

H100_RUNS = ROOT / "tests" / "data" / "gpu-runs" / "h100-2026-11-28"


def _h100_probe(timestamp: str = "2026-11-28T00:00:00+00:00") -> Any:
    from advisor.probing.results import ProbeResult

    return ProbeResult.from_dict({**json.loads((H100_RUNS / "probe-full.json").read_text()), "timestamp": timestamp})


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GPU_ADVISOR_HOME", str(tmp_path))
    monkeypatch.setenv("GPU_ADVISOR_CACHE_DIR", "off")
    clear_calibration_cache()
    yield tmp_path
    clear_calibration_cache()


def _store_with_a_bad_row(home: Path, column: str, value: Any) -> Path:
    """An older good H100 probe (id 1) and a newer probe of the same card (id 2) whose ``column`` is ``value``."""
    from advisor.store import HistoryStore

    store = HistoryStore(home / "history.sqlite3")
    store.save_probe(_h100_probe("2026-11-28T00:00:00+00:00"))
    bad = store.save_probe(_h100_probe("2026-12-01T00:00:00+00:00"))
    con = sqlite3.connect(store.path)
    with con:
        con.execute(f"UPDATE probe_runs SET {column} = ? WHERE id = ?", (value, bad))
    con.close()
    return store.path


BAD_ROWS = {
    "document not JSON": ("document", "{not json", "document is not JSON"),
    "document a BLOB": ("document", b"\xff\xfe\x00garbage", "document is a 10-byte BLOB, not UTF-8 text"),
    "document a number": ("document", 5, "document holds a JSON int, not an object"),  # TEXT affinity: '5'
    "document a real": ("document", 2.5, "document holds a JSON float, not an object"),
    "document a list": ("document", "[1, 2]", "document holds a JSON list, not an object"),
    "document nested too deeply": ("document", "[" * 100_000 + "]" * 100_000, "nested too deeply"),
    "document not a probe": ("document", '{"devices": 3, "kernels": []}', "not a probe result"),
    "versions not JSON": ("versions", "{", "versions is not JSON"),
    "timestamp a BLOB": ("timestamp", b"\x00", "timestamp is bytes b'\\x00', not text"),
    "catalog_id a BLOB": ("catalog_id", b"h100", "catalog_id is bytes"),
}


@pytest.mark.parametrize("case", list(BAD_ROWS))
def test_one_bad_row_is_skipped_with_a_warning_naming_it(home: Path, case: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    column, value, words = BAD_ROWS[case]
    _store_with_a_bad_row(home, column, value)
    assert main(["estimate", "--model", "llama-3-8b", "--gpu", "h100-sxm5-80gb", "--json"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["calibrated"] is True  # by the older, readable probe of the card
    err = " ".join(captured.err.split())
    assert "warning: skipped 1 unreadable row of the history store: probe 2" in err and words in err
    assert "history --repair" in err and "Traceback" not in err


def test_list_probes_warns_and_returns_the_readable_rows(home: Path) -> None:
    from advisor.store import HistoryStore, StoreRowWarning

    path = _store_with_a_bad_row(home, "document", "{not json")
    store = HistoryStore(path)
    with pytest.warns(StoreRowWarning, match="skipped probe 2: document is not JSON"):
        assert [r.id for r in store.list_probes()] == [1]
    with pytest.warns(StoreRowWarning):
        assert store.latest_probe("h100-sxm5-80gb").id == 1
    with pytest.raises(StoreError, match=r"saved probe 2 .* cannot be read: document is not JSON") as info:
        store.get_probe(2)
    assert "history --repair" in info.value.hint


def test_recommend_with_a_bad_row_answers_and_warns(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _store_with_a_bad_row(home, "document", b"\x80\x81")
    assert main(["recommend", "--model", "gpt2", "--gpus", "h100-sxm5-80gb", "a100-sxm4-80gb", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["rows"]
    assert "probe 2 (document is a 2-byte BLOB" in " ".join(captured.err.split())


def _validation_doc() -> dict[str, Any]:
    return json.loads((H100_RUNS / "validate-a.json").read_text())


def test_replay_of_a_bad_validation_row_is_a_clean_error_and_a_good_one_replays(
        home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from advisor.store import HistoryStore

    store = HistoryStore(home / "history.sqlite3")
    good = store.save_validation(_validation_doc())
    bad = store.save_validation(_validation_doc())
    con = sqlite3.connect(store.path)
    with con:
        con.execute("UPDATE validation_runs SET document = '{not json' WHERE id = ?", (bad,))
    con.close()
    assert main(["validate", "--replay", str(bad), "--calibration", "none"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith(f"error: saved validation {bad} in ") and "document is not JSON" in lines[0]
    assert lines[1].startswith("hint: ") and "history --repair" in lines[1]
    assert main(["validate", "--replay", str(good), "--calibration", "none", "--json"]) in (0, 1)
    assert json.loads(capsys.readouterr().out)["rows"]
    assert main(["validate", "--replay", "9" * 40, "--calibration", "none"]) == 2  # no such row, not an overflow
    assert "no validation 999" in capsys.readouterr().err
    with pytest.warns(Warning, match=f"skipped validation {bad}"):
        assert [v["id"] for v in store.list_validations()] == [good]


def test_history_lists_bad_rows_and_repair_exports_then_drops_them(home: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = _store_with_a_bad_row(home, "document", b"\xff\xfe")
    assert main(["history", "--json"]) == 1  # bad rows remain: said, and exit 1
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["schema_version"] == 1 and doc["counts"] == {"probe_runs": 2, "validation_runs": 0}
    assert [p["id"] for p in doc["probes"]] == [1]
    assert doc["bad_rows"] == [{"table": "probe_runs", "id": 2, "problem": "document is a 2-byte BLOB, not UTF-8 text"}]
    assert "history --repair" in captured.err
    export = home / "bad.json"
    export.write_text("earlier export")
    assert main(["history", "--repair", "--export", str(export)]) == 2  # never overwritten, nothing dropped
    assert "nothing was dropped" in capsys.readouterr().err and export.read_text() == "earlier export"
    export.unlink()
    assert main(["history", "--repair", "--export", str(export), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dropped"] == [
        {"table": "probe_runs", "id": 2, "problem": "document is a 2-byte BLOB, not UTF-8 text"}]
    saved = json.loads(export.read_text())
    assert saved["store"] == str(path) and saved["rows"][0]["columns"]["document"] == {"blob_base64": "//4="}
    assert saved["rows"][0]["columns"]["catalog_id"] == "h100-sxm5-80gb"
    assert main(["history"]) == 0
    assert main(["history", "--repair"]) == 0
    assert "nothing to repair" in capsys.readouterr().err
    clear_calibration_cache()
    assert main(["estimate", "--model", "gpt2", "--gpu", "h100-sxm5-80gb", "--json"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_history_without_a_store_says_so(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["history"]) == 0
    assert "no history store" in capsys.readouterr().err
    assert not (home / "history.sqlite3").exists()


def test_a_stored_probe_with_an_implausible_figure_drops_that_figure_and_says_so(
        home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from advisor.probing.results import ProbeResult
    from advisor.store import HistoryStore

    doc = json.loads((H100_RUNS / "probe-full.json").read_text())
    for k in doc["kernels"]:
        if k["name"] == "memory_copy":
            k["fraction_of_peak"] = 1e300
    HistoryStore(home / "history.sqlite3").save_probe(ProbeResult.from_dict(doc))
    assert main(["estimate", "--model", "llama-3-8b", "--gpu", "h100-sxm5-80gb", "--json"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out["calibrated"] is True  # its other figures
    assert not any(f.startswith("memory=") for f in out.get("calibrated_figures", []))
    assert "'memory_bandwidth' is 1e+300, outside the accepted range" in " ".join(captured.err.split())


# --- schema version ----------------------------------------------------------------------------------------------

def test_an_unversioned_store_is_stamped_and_keeps_its_rows(tmp_path: Path) -> None:
    from advisor.store import _SCHEMA, SCHEMA_VERSION, HistoryStore

    path = tmp_path / "h.sqlite3"
    con = sqlite3.connect(path)
    con.executescript(_SCHEMA)  # as every store before versioning: the same tables, user_version 0
    con.execute("INSERT INTO validation_runs (timestamp, device, document) VALUES ('t', 'd', '{\"rows\": []}')")
    con.commit()
    con.close()
    assert HistoryStore(path, read_only=True).schema_version == 0  # reading changes nothing
    store = HistoryStore(path)
    assert store.schema_version == SCHEMA_VERSION == 1
    assert [v["id"] for v in store.list_validations()] == [1]


def test_a_newer_schema_is_refused_never_rewritten_and_estimates_go_on(home: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from advisor.store import HistoryStore, StoreSchemaError

    path = HistoryStore(home / "history.sqlite3").path
    con = sqlite3.connect(path)
    con.execute("PRAGMA user_version = 7")
    con.close()
    before = path.read_bytes()
    with pytest.raises(StoreSchemaError, match="schema version 7; this gpu-advisor reads versions up to 1") as info:
        HistoryStore(path)
    assert "upgrade" in info.value.hint and "move" not in info.value.hint
    assert main(["estimate", "--model", "gpt2", "--gpu", "h100-sxm5-80gb", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["calibrated"] is False and "schema version 7" in captured.err
    assert main(["history"]) == 2
    error, hint = capsys.readouterr().err.strip().splitlines()
    assert "schema version 7" in error and "upgrade" in hint
    assert path.read_bytes() == before


def test_foreign_tables_are_schema_drift_not_corruption(tmp_path: Path) -> None:
    from advisor.store import HistoryStore, StoreSchemaError

    path = tmp_path / "h.sqlite3"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE probe_runs (id INTEGER PRIMARY KEY, payload TEXT)")
    con.close()
    with pytest.raises(StoreSchemaError, match="probe_runs table lacks timestamp, host") as info:
        HistoryStore(path)
    assert "move the file aside" not in (info.value.hint or "")


# --- what went wrong, with the right hint -------------------------------------------------------------------------

def test_a_locked_store_says_locked_and_not_move_aside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from advisor import store as store_module
    from advisor.store import HistoryStore, StoreLockedError

    store = HistoryStore(tmp_path / "h.sqlite3")
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_S", 0.2)
    holder = sqlite3.connect(store.path)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreLockedError, match="locked by another process") as info:
            HistoryStore(store.path).save_probe(_h100_probe())
    finally:
        holder.rollback()
        holder.close()
    assert "do not move it" in info.value.hint and "move the file aside" not in info.value.hint


def test_a_full_disk_says_full_and_that_the_store_is_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from advisor.store import HistoryStore, StoreFullError

    store = HistoryStore(tmp_path / "h.sqlite3")
    store.save_probe(_h100_probe())
    real_open = HistoryStore._open

    def capped(self: HistoryStore) -> sqlite3.Connection:  # SQLite's own SQLITE_FULL, as on a full disk
        con = real_open(self)
        pages = con.execute("PRAGMA page_count").fetchone()[0]
        con.execute(f"PRAGMA max_page_count = {pages}")
        return con

    monkeypatch.setattr(HistoryStore, "_open", capped)
    with pytest.raises(StoreFullError, match="the disk is full") as info:
        store.save_probe(_h100_probe())
    assert "free space" in info.value.hint and "intact" in info.value.hint
    assert "move the file aside" not in info.value.hint
    monkeypatch.setattr(HistoryStore, "_open", real_open)
    assert len(store.list_probes()) == 1


def test_store_errors_are_classified_by_sqlite_code(tmp_path: Path) -> None:
    from advisor.store import StoreCorruptError, StoreFullError, StoreLockedError, StoreReadOnlyError, store_error

    def err(code: int, text: str) -> sqlite3.OperationalError:
        exc = sqlite3.OperationalError(text)
        exc.sqlite_errorcode = code  # type: ignore[attr-defined]
        return exc

    path = tmp_path / "h.sqlite3"
    assert isinstance(store_error(err(sqlite3.SQLITE_READONLY, "attempt to write a readonly database"), path, "use"),
                      StoreReadOnlyError)
    assert isinstance(store_error(err(sqlite3.SQLITE_FULL, "database or disk is full"), path, "use"), StoreFullError)
    assert isinstance(store_error(err(sqlite3.SQLITE_BUSY | (1 << 8), "database is locked"), path, "use"),
                      StoreLockedError)
    corrupt = store_error(err(sqlite3.SQLITE_CORRUPT, "database disk image is malformed"), path, "use")
    assert isinstance(corrupt, StoreCorruptError) and "move the file aside" in corrupt.hint
    import errno as errno_module

    assert isinstance(store_error(OSError(errno_module.ENOSPC, "No space left on device"), path, "use"),
                      StoreFullError)
    assert isinstance(store_error(OSError(errno_module.EROFS, "Read-only file system"), path, "use"),
                      StoreReadOnlyError)
    for kind in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_FULL, sqlite3.SQLITE_BUSY, sqlite3.SQLITE_IOERR):
        assert "move the file aside" not in store_error(err(kind, "x"), path, "use").hint


@pytest.fixture
def read_only_home(home: Path) -> Path:
    """A store with one H100 probe in a directory (and file) nobody may write: chmod, or chattr +i as root."""
    from advisor.store import HistoryStore

    HistoryStore(home / "history.sqlite3").save_probe(_h100_probe())
    targets = [str(home / "history.sqlite3"), str(home)]
    if os.geteuid() != 0:
        os.chmod(home / "history.sqlite3", 0o444)
        os.chmod(home, 0o555)
        undo = [lambda: os.chmod(home, 0o755), lambda: os.chmod(home / "history.sqlite3", 0o644)]
    else:
        if shutil.which("chattr") is None or \
                subprocess.run(["chattr", "+i", *targets], capture_output=True).returncode != 0:
            pytest.skip("root, and chattr +i is not available here: nothing can make a directory read-only")
        undo = [lambda: subprocess.run(["chattr", "-i", *targets], check=True)]
    try:
        yield home
    finally:
        for step in undo:
            step()


def test_a_read_only_store_still_calibrates_and_saving_says_read_only(read_only_home: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from advisor.store import HistoryStore, StoreReadOnlyError

    assert main(["estimate", "--model", "llama-3-8b", "--gpu", "h100-sxm5-80gb", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["calibrated"] is True and "warning" not in captured.err
    assert main(["history", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["probes"]) == 1
    with pytest.raises(StoreReadOnlyError, match="read-only") as info:
        HistoryStore(read_only_home / "history.sqlite3").save_probe(_h100_probe())
    assert "estimates still read it" in info.value.hint and "move the file aside" not in info.value.hint
    assert main(["history", "--repair"]) == 2
    assert "read-only" in capsys.readouterr().err


def test_a_corrupt_store_read_only_is_corrupt_and_estimates_go_on(corrupt_home: Path) -> None:
    from advisor.calibration import stored_probes
    from advisor.store import HistoryStore, StoreCorruptError

    with pytest.raises(StoreCorruptError, match="corrupt or not an SQLite database") as info:
        HistoryStore(corrupt_home / "history.sqlite3", read_only=True)
    assert "move the file aside" in info.value.hint
    assert "corrupt" in (stored_probes().problem or "")
