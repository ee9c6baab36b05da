"""Purchase prices: every datacenter, workstation and Instinct card has a dated price of a stated kind (or says it
is not sold), and ``benchmarks/refresh_prices.py`` writes a CSV of prices into spec files and nothing else."""

from __future__ import annotations

import csv
import importlib.util
import shutil
from pathlib import Path

import pytest

from advisor.catalog import CLOUD_PRICE_CLASSES, PRICE_KINDS, load_spec_file, load_specs

ROOT = Path(__file__).resolve().parent.parent
PRICES_CSV = ROOT / "tests" / "data" / "prices" / "purchase-2026-12.csv"
CLOUD_CSV = ROOT / "tests" / "data" / "prices" / "cloud-2026-12.csv"


def _refresh_module():
    spec = importlib.util.spec_from_file_location("refresh_prices", ROOT / "benchmarks" / "refresh_prices.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_card_a_buyer_compares_has_a_dated_price_or_says_not_sold() -> None:
    missing = set()
    for card in load_specs(extra_dirs=[]):
        if card.price_usd is not None or card.price_kind is not None:
            assert card.price_kind in PRICE_KINDS and card.price_date, card.id
            assert (card.price_usd is None) == (card.price_kind == "not sold"), card.id
            assert card.source_for("price_usd" if card.price_usd else "price_kind") != card.source, card.id
        elif card.segment in ("datacenter", "workstation", "instinct"):
            missing.add(card.id)
    assert missing == set(), f"no dated price or cited 'not sold' for {sorted(missing)} (docs/prices.md)"


def test_the_shipped_prices_are_the_recorded_csv() -> None:
    # the CSV is the record of every price's source; the spec files hold what it says
    with PRICES_CSV.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["id"] for r in rows} >= {c.id for c in load_specs(extra_dirs=[]) if c.price_kind}
    for row in rows:
        card = load_spec_file(ROOT / "specs" / f"{row['id']}.toml")
        assert card.price_kind == row["price_kind"] and card.price_date == row["price_date"], row["id"]
        if row["price_usd"]:
            assert card.price_usd == pytest.approx(float(row["price_usd"])), row["id"]
            assert card.sources["price_usd"] == row["source"], row["id"]
        else:
            assert card.price_usd is None and card.sources["price_kind"] == row["source"], row["id"]


def test_every_cloud_price_is_the_recorded_csv_and_names_its_class() -> None:
    # one basis (docs/prices.md): on-demand per GPU-hour, the provider's class named; GPU clouds where one rents it
    with CLOUD_CSV.open(newline="", encoding="utf-8") as fh:
        rows = {r["id"]: r for r in csv.DictReader(fh)}
    priced = {c.id: c for c in load_specs(extra_dirs=[]) if c.cloud_usd_per_hour is not None}
    assert set(rows) == set(priced)
    for card_id, card in priced.items():
        row = rows[card_id]
        assert card.cloud_price_class in CLOUD_PRICE_CLASSES and card.cloud_price_class == row["cloud_price_class"]
        assert card.cloud_usd_per_hour == pytest.approx(float(row["cloud_usd_per_hour"])), card_id
        assert (card.cloud_price_date, card.sources["cloud_usd_per_hour"]) == (row["cloud_price_date"],
                                                                               row["cloud_source"]), card_id
    # the example: a V100 rented at a hyperscaler's share price above an H100 at a GPU cloud's
    assert priced["v100-sxm2-32gb"].cloud_usd_per_hour < priced["h100-sxm5-80gb"].cloud_usd_per_hour
    hyperscaler = {c for c, card in priced.items() if card.cloud_price_class == "hyperscaler"}
    assert hyperscaler == {"t4", "p4", "p100-pcie-16gb", "p100-sxm2-16gb"}  # no GPU-cloud rate found for these


def test_the_recommend_header_names_cards_priced_off_the_basis(tmp_path: Path) -> None:
    from advisor.recommender import recommend

    rec = recommend("resnet50", batch_size=32, gpus=["t4", "rtx-4090"], max_gpus=1)
    line = next(x for x in rec.summary if x.startswith("prices:"))
    assert "at GPU clouds as of 2025-06 to 2025-07" in line and "hyperscaler rates for Tesla T4" in line
    assert {r.gpu_id: r.cloud_price_class for r in rec.rows} == {"t4": "hyperscaler", "rtx-4090": "gpu cloud"}


def _csv(path: Path, rows: list[dict[str, str]]) -> Path:
    fields = ["id", "price_usd", "price_kind", "price_date", "source", "cloud_usd_per_hour", "cloud_price_date",
              "cloud_price_class", "cloud_source"]
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_refresh_writes_the_prices_and_leaves_every_other_line(tmp_path: Path) -> None:
    specs = tmp_path / "specs"
    specs.mkdir()
    for card in ("rtx-4090", "l4", "mi250"):
        shutil.copy(ROOT / "specs" / f"{card}.toml", specs)
    before = (specs / "rtx-4090.toml").read_text().splitlines()
    prices = _csv(tmp_path / "p.csv", [
        {"id": "rtx-4090", "price_usd": "1799", "price_kind": "street", "price_date": "2026-11",
         "source": "a shop's page (2026-11)", "cloud_usd_per_hour": "0.59", "cloud_price_date": "2026-11",
         "cloud_price_class": "marketplace", "cloud_source": "a cloud's price page (2026-11)"},
        {"id": "mi250", "price_usd": "", "price_kind": "not sold", "price_date": "2026-11",
         "source": "OAM module, sold only in servers"},
    ])
    changed, errors = _refresh_module().refresh(prices, specs)
    assert errors == [] and changed == ["rtx-4090", "mi250"]
    card = load_spec_file(specs / "rtx-4090.toml")
    assert (card.price_usd, card.price_kind, card.price_date) == (1799, "street", "2026-11")
    assert card.cloud_usd_per_hour == pytest.approx(0.59) and card.sources["price_usd"] == "a shop's page (2026-11)"
    assert card.cloud_price_class == "marketplace"
    after = (specs / "rtx-4090.toml").read_text().splitlines()
    untouched = [line for line in before if not line.startswith(("price_", "cloud_usd", "cloud_price"))]
    assert len(after) - len(before) == 0  # every field the row sets was already in the file: replaced in place
    assert [line for line in after if line in untouched] == untouched  # comments, figures, tables kept in order
    mi250 = load_spec_file(specs / "mi250.toml")
    assert mi250.price_usd is None and mi250.price_kind == "not sold" and "servers" in mi250.sources["price_kind"]
    # a second run with the same file changes nothing
    assert _refresh_module().refresh(prices, specs) == ([], [])


def _l4_only(tmp_path: Path) -> tuple[Path, str]:
    """A specs directory holding just the catalog's L4, and that file's text before any refresh."""
    specs = tmp_path / "specs"
    specs.mkdir()
    shutil.copy(ROOT / "specs" / "l4.toml", specs)
    return specs, (specs / "l4.toml").read_text()


def test_refresh_restores_a_card_it_would_break_and_names_it(tmp_path: Path) -> None:
    specs, original = _l4_only(tmp_path)
    prices = _csv(tmp_path / "p.csv", [
        {"id": "l4", "price_usd": "2500", "price_kind": "msrp", "price_date": "2026-01", "source": "x"},
        {"id": "no-such-card", "price_usd": "1", "price_kind": "list", "price_date": "2026-01", "source": "x"},
    ])
    module = _refresh_module()
    changed, errors = module.refresh(prices, specs)
    assert changed == [] and len(errors) == 2
    assert "l4" in errors[0] and "price_kind" in errors[0] and "no-such-card" in errors[1]
    assert (specs / "l4.toml").read_text() == original
    assert module.main([str(prices), "--specs", str(specs)]) == 1


@pytest.mark.parametrize(("cells", "words"), [
    ({"price_usd": "2400", "price_kind": "street", "price_date": "2026-10", "source": ""}, "without a source"),
    ({"cloud_usd_per_hour": "0.5", "cloud_price_date": "2026-10", "cloud_source": "a page"}, "cloud_price_class"),
    ({"cloud_usd_per_hour": "0.5", "cloud_price_date": "2026-10", "cloud_price_class": "spot",
      "cloud_source": "a page"}, "cloud_price_class must be one of"),
    ({"cloud_usd_per_hour": "0.5", "cloud_price_date": "Oct 2026", "cloud_price_class": "gpu cloud",
      "cloud_source": "a page"}, "cloud_price_date must be"),
])
def test_refresh_refuses_a_price_without_source_class_or_date(tmp_path: Path, cells: dict[str, str],
                                                              words: str) -> None:
    specs, original = _l4_only(tmp_path)
    changed, errors = _refresh_module().refresh(_csv(tmp_path / "p.csv", [{"id": "l4", **cells}]), specs)
    assert changed == [] and len(errors) == 1 and words in errors[0], errors
    assert (specs / "l4.toml").read_text() == original


def test_refresh_dry_run_writes_nothing(tmp_path: Path) -> None:
    specs, original = _l4_only(tmp_path)
    prices = _csv(tmp_path / "p.csv", [
        {"id": "l4", "price_usd": "2400", "price_kind": "street", "price_date": "2026-10", "source": "x"}])
    assert _refresh_module().refresh(prices, specs, dry_run=True) == (["l4"], [])
    assert (specs / "l4.toml").read_text() == original
