"""Errors as the README promises: ``error: ...`` then ``hint: ...`` on stderr, non-zero exit, no usage block."""

from __future__ import annotations

from pathlib import Path

import pytest

from advisor.cli import main


def _two_lines(err: str) -> tuple[str, str]:
    lines = err.strip().splitlines()
    assert len(lines) == 2, err
    assert lines[0].startswith("error: ") and lines[1].startswith("hint: "), err
    return lines[0], lines[1]


@pytest.mark.parametrize(("argv", "words"), [
    (["estimate", "--model", "gpt2", "--gpu", "h100-sxm5-80gb", "--batch-size", "x"], "--batch-size"),
    (["estimate", "--model", "gpt2"], "--gpu"),
    (["estimate", "--model", "gpt2", "--gpu", "h100-sxm5-80gb", "--precision", "fp9"], "fp9"),
    (["estimat"], "estimat"),
    (["recommend", "--model", "gpt2", "--bogus"], "--bogus"),
])
def test_argparse_errors_are_one_error_line_and_a_hint(argv: list[str], words: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "usage:" not in err
    error, hint = _two_lines(err)
    assert words in error and ("--help" in hint or "commands:" in hint)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    out = {"broken": tmp_path / "broken.json", "empty": tmp_path / "empty.json", "array": tmp_path / "array.json",
           "missing": tmp_path / "missing.json"}
    out["broken"].write_text("{bad")
    out["empty"].write_text("")
    out["array"].write_text("[1, 2]")
    return out


@pytest.mark.parametrize(("kind", "words"), [("broken", "not valid JSON"), ("empty", "is empty"),
                                             ("array", "JSON list"), ("missing", "does not exist")])
def test_bad_config_files_get_a_hint(files: dict[str, Path], kind: str, words: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["estimate", "--model", str(files[kind]), "--gpu", "h100-sxm5-80gb"]) == 2
    error, hint = _two_lines(capsys.readouterr().err)
    assert words in error and str(files[kind].name) in error and hint


@pytest.mark.parametrize(("kind", "words"), [("broken", "not valid JSON"), ("empty", "is empty"),
                                             ("array", "JSON list"), ("missing", "cannot read")])
def test_bad_calibration_files_get_a_hint(files: dict[str, Path], kind: str, words: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["estimate", "--model", "gpt2", "--gpu", "h100-sxm5-80gb", "--calibration", str(files[kind])]) == 2
    error, hint = _two_lines(capsys.readouterr().err)
    assert words in error and "probe --json" in hint


def test_bad_toml_names_its_directory_and_a_misnamed_file_says_how_to_fix_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "mine"
    bad.mkdir()
    (bad / "x.toml").write_text('id = "x"\nname = \n')
    assert main(["specs", "list", "--specs-dir", str(bad)]) == 2
    error, hint = _two_lines(capsys.readouterr().err)
    assert str(bad) in error and "not valid TOML" in error and str(bad) in hint
    src = Path(__file__).resolve().parent.parent / "specs" / "rtx-4090.toml"
    (bad / "x.toml").write_text(src.read_text())  # id "rtx-4090" in x.toml
    assert main(["specs", "list", "--specs-dir", str(bad)]) == 2
    error, hint = _two_lines(capsys.readouterr().err)
    assert "must equal the file name" in error and "rtx-4090.toml" in hint


def test_readme_documents_the_id_equals_file_name_rule() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert "`id` must equal its file name" in readme


def test_library_argument_checks_are_advisor_errors_with_a_hint() -> None:
    from advisor.catalog import get_gpu
    from advisor.device import as_device
    from advisor.errors import AdvisorError, EstimateError, ProbeUnavailable
    from advisor.probing.kernels import bandwidth_bytes

    for call, kind, accepted in ((lambda: as_device("tpu:0"), ProbeUnavailable, "cuda:N"),
                                 (lambda: get_gpu("h100-sxm5-80gb").peak_flops("fp6"), EstimateError, "amp-bf16"),
                                 (lambda: bandwidth_bytes("swap", 1), AdvisorError, "copy, read, write")):
        with pytest.raises(kind) as info:
            call()
        assert not isinstance(info.value, ValueError) and info.value.hint and accepted in info.value.hint
