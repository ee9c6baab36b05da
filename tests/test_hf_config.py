"""Configs whose model_type has no analytic model (issue 16, item 6): built with transformers and traced."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from advisor.cli import main
from advisor.errors import WorkloadError
from advisor.workload import load_workload

HAS_TRANSFORMERS = importlib.util.find_spec("transformers") is not None
needs_transformers = pytest.mark.skipif(not HAS_TRANSFORMERS,
                                        reason="transformers is an optional extra (gpu-advisor[hf]); not installed")

# ViT-Base/16 (google/vit-base-patch16-224 layout, 2 labels) and OPT-125m (facebook/opt-125m config.json).
VIT = {"model_type": "vit", "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
       "intermediate_size": 3072, "image_size": 224, "patch_size": 16, "num_channels": 3,
       "architectures": ["ViTForImageClassification"]}
OPT_125M = {"model_type": "opt", "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
            "ffn_dim": 3072, "vocab_size": 50272, "max_position_embeddings": 2048, "word_embed_proj_dim": 768,
            "architectures": ["OPTForCausalLM"], "_name_or_path": "facebook/opt-125m"}


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPU_ADVISOR_CACHE_DIR", str(tmp_path / "cache"))


def test_without_transformers_the_error_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(WorkloadError, match=r"unsupported model_type 'vit'.*needs transformers") as info:
        load_workload(dict(VIT), batch_size=2)
    assert "gpu-advisor[hf]" in (info.value.hint or "")
    path = tmp_path / "config.json"
    path.write_text(json.dumps(OPT_125M))
    assert main(["estimate", "--model", str(path), "--gpu", "a100-sxm4-80gb"]) == 2
    err = capsys.readouterr().err
    assert "error: unsupported model_type 'opt'" in err and "hint: pip install 'gpu-advisor[hf]'" in err


def test_a_config_without_sizes_is_refused_rather_than_filled_with_defaults() -> None:
    with pytest.raises(WorkloadError, match="unsupported model_type 'rwkv'"):
        load_workload({"model_type": "rwkv"}, batch_size=1)


def test_options_only_the_analytic_path_models_are_refused_before_any_import() -> None:
    with pytest.raises(WorkloadError, match="lora_rank"):
        load_workload(dict(OPT_125M), batch_size=1, lora_rank=8)


@needs_transformers
@pytest.mark.slow  # ~6 s: imports transformers and traces three builds on fake tensors
def test_vit_and_opt_configs_are_built_on_meta_and_traced(capsys: pytest.CaptureFixture[str]) -> None:
    vit = load_workload(dict(VIT), batch_size=4)
    assert vit.params == 85_800_194 and vit.family == "vit" and vit.image_size == 224 and vit.source == "config"
    assert any("meta device" in a for a in vit.assumptions)
    opt = load_workload(dict(OPT_125M), batch_size=2, seq_len=512)
    assert opt.params == 125_239_296 and opt.family == "decoder" and opt.seq_len == 512  # facebook/opt-125m
    assert opt.flops_per_step > 6 * 85e6 * 2 * 512  # at least 6 x non-embedding params x tokens
    assert opt.with_batch_size(4).flops_per_step == pytest.approx(2 * opt.flops_per_step, rel=0.05)
    long = load_workload(dict(OPT_125M), batch_size=1, seq_len=4096)
    assert any(a.startswith("warning:") and "(2,048)" in a for a in long.assumptions)
