"""Hugging Face Hub ids (issue 16, item 5): only config.json is fetched, through huggingface_hub (faked here)."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from advisor.cli import main
from advisor.errors import WorkloadError
from advisor.workload import load_workload
from advisor.workload.hub import fetch_config, looks_like_hub_id

QWEN2_7B = {"model_type": "qwen2", "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
            "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064, "tie_word_embeddings": False,
            "max_position_embeddings": 131072}


def _fake_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, error: type[Exception] | None = None) -> list[tuple]:
    calls: list[tuple] = []

    def hf_hub_download(repo_id: str, filename: str, revision: str | None = None) -> str:
        calls.append((repo_id, filename))
        if error is not None:
            raise error("simulated")
        path = tmp_path / repo_id.replace("/", "--") / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(QWEN2_7B))
        return str(path)

    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(hf_hub_download=hf_hub_download))
    return calls


def test_hub_id_fetches_only_config_json(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    calls = _fake_hub(monkeypatch, tmp_path)
    w = load_workload("Qwen/Qwen2-7B", batch_size=1, seq_len=1024)
    assert calls == [("Qwen/Qwen2-7B", "config.json")]
    assert w.name == "Qwen/Qwen2-7B" and w.params == pytest.approx(7_615_616_512)  # Qwen2-7B's published count
    assert main(["estimate", "--model", "Qwen/Qwen2-7B", "--gpu", "h100-sxm5-80gb", "--seq-len", "1024",
                 "--lora-rank", "16", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["model"] == "Qwen/Qwen2-7B" and doc["workload"]["params"] > 7e9


def test_missing_huggingface_hub_says_how_to_install(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails
    assert main(["estimate", "--model", "Qwen/Qwen2-7B", "--gpu", "h100-sxm5-80gb"]) == 2
    err = capsys.readouterr().err
    assert "huggingface_hub is not installed" in err and "pip install 'gpu-advisor[hub]'" in err


@pytest.mark.parametrize(("name", "words"), [
    ("LocalEntryNotFoundError", "not reachable"),
    ("GatedRepoError", "gated"),
    ("RepositoryNotFoundError", "no Hugging Face Hub model"),
    ("EntryNotFoundError", "no config.json"),
    ("RuntimeError", "cannot fetch"),
])
def test_offline_gated_and_missing_repos_get_a_hint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str,
                                                    words: str) -> None:
    error = type(name, (Exception,), {})
    _fake_hub(monkeypatch, tmp_path, error)
    with pytest.raises(WorkloadError, match=words) as info:
        fetch_config("meta-llama/Llama-3.1-8B-Instruct")
    assert info.value.hint and ("config.json" in info.value.hint or "spelling" in info.value.hint)


def test_local_config_and_hub_id_shapes(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(QWEN2_7B))
    assert load_workload(str(path), batch_size=1, seq_len=512).params == pytest.approx(7_615_616_512)
    assert looks_like_hub_id("Qwen/Qwen2-7B") and looks_like_hub_id("meta-llama/Llama-3.1-8B")
    assert not looks_like_hub_id(str(path)) and not looks_like_hub_id("a/b/c") and not looks_like_hub_id("x.json")


def test_readme_shows_a_hub_id_and_both_extras() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert "--model Qwen/Qwen2-7B" in readme and "gpu-advisor[hub]" in readme and "gpu-advisor[hf]" in readme
