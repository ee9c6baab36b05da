"""``specs list | show | compare``: text and --json output, filters, errors, help, and a light import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from advisor.catalog import SEGMENTS, get_gpu, load_specs
from advisor.cli import main

ROOT = Path(__file__).resolve().parent.parent


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def run_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> Any:
    code, out, err = run([*argv, "--json"], capsys)
    assert code == 0, err
    return json.loads(out)  # exactly one document: json.loads rejects trailing text


# --- specs list ------------------------------------------------------------------------------------

def test_list_json_has_every_card_with_a_source(capsys: pytest.CaptureFixture[str]) -> None:
    doc = run_json(["specs", "list"], capsys)
    assert doc["count"] == len(doc["cards"]) == len(load_specs())
    assert len({c["id"] for c in doc["cards"]}) == doc["count"]
    for card in doc["cards"]:
        assert card["source"]
        assert {"id", "name", "vendor", "segment", "memory_gb", "memory_bandwidth_gbs", "fp32_tflops",
                "bf16_tflops", "fp8_tflops", "tdp_w", "interconnect", "price_usd", "cloud_usd_per_hour"} <= set(card)


def test_list_json_covers_all_segments(capsys: pytest.CaptureFixture[str]) -> None:
    doc = run_json(["specs", "list"], capsys)
    assert {c["segment"] for c in doc["cards"]} == set(SEGMENTS)
    assert doc["count"] >= 60


def test_list_text_is_a_table_with_ids(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["specs", "list", "--segment", "datacenter"], capsys)
    assert code == 0 and err == ""
    assert "h100-sxm5-80gb" in out and "a100-sxm4-80gb" in out
    assert "rtx-4090" not in out
    assert f"{len([s for s in load_specs() if s.segment == 'datacenter'])} cards" in out


@pytest.mark.parametrize("vendor", ["nvidia", "amd"])
def test_list_filters_by_vendor(vendor: str, capsys: pytest.CaptureFixture[str]) -> None:
    cards = run_json(["specs", "list", "--vendor", vendor], capsys)["cards"]
    assert cards and all(c["vendor"] == vendor for c in cards)
    assert len(cards) == len([s for s in load_specs() if s.vendor == vendor])


@pytest.mark.parametrize("segment", SEGMENTS)
def test_list_filters_by_segment(segment: str, capsys: pytest.CaptureFixture[str]) -> None:
    cards = run_json(["specs", "list", "--segment", segment], capsys)["cards"]
    assert cards and all(c["segment"] == segment for c in cards)


def test_list_filters_by_min_memory_and_combines(capsys: pytest.CaptureFixture[str]) -> None:
    cards = run_json(["specs", "list", "--min-memory-gb", "80"], capsys)["cards"]
    ids = {c["id"] for c in cards}
    assert all(c["memory_gb"] >= 80 for c in cards)
    assert {"h100-sxm5-80gb", "a100-sxm4-80gb", "mi300x", "h200-sxm-141gb"} <= ids
    assert "a100-sxm4-40gb" not in ids
    both = run_json(["specs", "list", "--min-memory-gb", "80", "--vendor", "amd"], capsys)["cards"]
    assert both and all(c["vendor"] == "amd" and c["memory_gb"] >= 80 for c in both)


def test_list_sorts_numbers_descending_missing_last(capsys: pytest.CaptureFixture[str]) -> None:
    cards = run_json(["specs", "list", "--sort", "fp8_tflops"], capsys)["cards"]
    values = [c["fp8_tflops"] for c in cards]
    present = [v for v in values if v is not None]
    assert present == sorted(present, reverse=True)
    assert values[: len(present)] == present  # every None after every number
    assert cards[0]["id"] == max(load_specs(), key=lambda s: s.fp8_tflops or 0).id


def test_list_sorts_names_ascending(capsys: pytest.CaptureFixture[str]) -> None:
    ids = [c["id"] for c in run_json(["specs", "list", "--sort", "id"], capsys)["cards"]]
    assert ids == sorted(ids)


@pytest.mark.parametrize("argv", [["specs", "list", "--sort", "colour"], ["specs", "list", "--vendor", "intel"],
                                  ["specs", "list", "--segment", "mainframe"]])
def test_list_rejects_bad_choices(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_list_rejects_negative_memory(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["specs", "list", "--min-memory-gb", "-1", "--json"], capsys)
    assert code == 2 and out == ""
    assert err.startswith("error:") and "-1" in err


# --- specs show ------------------------------------------------------------------------------------

def test_show_nvml_name_json(capsys: pytest.CaptureFixture[str]) -> None:
    doc = run_json(["specs", "show", "NVIDIA H100 80GB HBM3"], capsys)
    assert doc["id"] == "h100-sxm5-80gb"
    assert doc["memory_gb"] == 80 and doc["memory_bandwidth_gbs"] == 3350
    assert doc["interconnect"]["nvlink_gbs"] == 900
    assert doc == json.loads(json.dumps(get_gpu("h100-sxm5-80gb").to_dict()))


def test_show_text_lists_figures_and_source(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["specs", "show", "Tesla V100-SXM2-32GB"], capsys)
    assert code == 0 and err == ""
    spec = get_gpu("v100-sxm2-32gb")
    assert spec.name in out and "v100-sxm2-32gb" in out
    assert "memory_bandwidth_gbs" in out and "900" in out
    assert "bf16_tflops" not in out  # unsupported precisions are not shown
    assert "source:" in out


def test_show_unknown_card_exits_2_with_error_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["specs", "show", "NVIDIA Z9000 Ultra", "--json"], capsys)
    assert code == 2
    assert out == ""
    assert err.startswith("error: unknown GPU 'NVIDIA Z9000 Ultra'")
    assert "hint: closest catalog ids:" in err


def test_show_ambiguous_card_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["specs", "show", "A100"], capsys)
    assert code == 2 and out == ""
    assert "ambiguous" in err and "a100-sxm4-80gb" in err


def test_show_with_user_specs_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    user = tmp_path / "cli-user-specs"
    user.mkdir()
    text = (ROOT / "specs" / "l4.toml").read_text()
    text = text.replace('cloud_price_date = "', 'cloud_price_date = "2026-03" #', 1)
    text = text.replace("cloud_usd_per_hour = ", "cloud_usd_per_hour = 0.12 #", 1)
    (user / "l4.toml").write_text(text)
    doc = run_json(["specs", "show", "NVIDIA L4", "--specs-dir", str(user)], capsys)
    assert doc["cloud_usd_per_hour"] == 0.12 and doc["cloud_price_date"] == "2026-03"


# --- specs compare ---------------------------------------------------------------------------------

def test_compare_json_ratios_to_first(capsys: pytest.CaptureFixture[str]) -> None:
    doc = run_json(["specs", "compare", "NVIDIA H100 80GB HBM3", "NVIDIA H200", "NVIDIA A100-SXM4-80GB"], capsys)
    assert doc["base"] == "h100-sxm5-80gb"
    assert [c["id"] for c in doc["cards"]] == ["h100-sxm5-80gb", "h200-sxm-141gb", "a100-sxm4-80gb"]
    base, h200, a100 = doc["cards"]
    assert all(r in (None, 1.0) for r in base["ratio_to_base"].values())
    assert h200["ratio_to_base"]["memory_gb"] == pytest.approx(141 / 80, abs=1e-3)
    assert h200["ratio_to_base"]["memory_bandwidth_gbs"] == pytest.approx(4800 / 3350, abs=1e-3)
    assert a100["values"]["fp8_tflops"] is None and a100["ratio_to_base"]["fp8_tflops"] is None
    assert a100["ratio_to_base"]["bf16_tflops"] == pytest.approx(312 / 989.4, abs=1e-3)


def test_compare_text(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["specs", "compare", "rtx 4090", "a100 sxm4 80gb"], capsys)
    assert code == 0 and err == ""
    assert "compared to" in out and "memory_bandwidth_gbs" in out and "(x" in out


def test_compare_needs_two_cards(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["specs", "compare", "t4", "--json"], capsys)
    assert code == 2 and out == "" and err.startswith("error:")


def test_compare_unknown_card(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["specs", "compare", "t4", "voodoo 5", "--json"], capsys)
    assert code == 2 and out == "" and "voodoo 5" in err


# --- help and import weight --------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [["--help"], ["specs", "--help"], ["specs", "list", "--help"],
                                  ["specs", "show", "--help"], ["specs", "compare", "--help"]])
def test_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_specs_list_does_not_import_heavy_modules() -> None:
    code = ("import sys, json\n"
            "from advisor.cli import main\n"
            "rc = main(['specs', 'list', '--json'])\n"
            "heavy = sorted(m for m in ('torch', 'pandas', 'streamlit', 'pynvml', 'torchvision') if m in sys.modules)\n"
            "print(json.dumps({'rc': rc, 'heavy': heavy}), file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stderr.strip().splitlines()[-1])
    assert report == {"rc": 0, "heavy": []}
    assert json.loads(proc.stdout)["count"] >= 1


def test_python_dash_m_advisor_specs_show() -> None:
    proc = subprocess.run([sys.executable, "-m", "advisor", "specs", "show", "AMD Instinct MI300X", "--json"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["id"] == "mi300x"
