"""recommend and estimate without repeated work (issue 28, item 2): what a repeated request reuses, and that the
answers stay the same figure for figure."""

from __future__ import annotations

import json

import pytest

from advisor import recommender
from advisor.estimator import prepare_workload
from advisor.recommender import recommend


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    from advisor.estimator import estimate_workload

    seen: list[str] = []

    def counted(workload, spec, **kw):  # type: ignore[no-untyped-def]
        seen.append(spec.id)
        return estimate_workload(workload, spec, **kw)

    monkeypatch.setattr(recommender, "_estimator", lambda: counted)
    return seen


@pytest.mark.parametrize(("model", "kw"), [("gpt2", {"seq_len": 512}), ("mnist-cnn", {}),
                                           ("lstm-lm", {"mode": "infer"})])
def test_a_repeated_request_reprices_nothing_and_answers_the_same(model: str, kw: dict,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _counting(monkeypatch)
    first = recommend(model, batch_size=16, calibration=None, max_gpus=4, **kw)
    n = len(seen)
    assert n > 0
    second = recommend(model, batch_size=16, calibration=None, max_gpus=4, **kw)
    assert len(seen) == n
    assert json.dumps(second.to_dict(), sort_keys=True) == json.dumps(first.to_dict(), sort_keys=True)
    # another objective ranks the same estimates
    recommend(model, batch_size=16, calibration=None, max_gpus=4, objective="energy", **kw)
    assert len(seen) == n
    # another workload is priced anew
    recommend(model, batch_size=32, calibration=None, max_gpus=4, **kw)
    assert len(seen) > n
    # and the answers are those of a process that never saw the request before
    recommender._REUSE.clear()
    recommender._BUILT.clear()
    fresh = recommend(model, batch_size=16, calibration=None, max_gpus=4, **kw)
    assert json.dumps(fresh.to_dict(), sort_keys=True) == json.dumps(first.to_dict(), sort_keys=True)


def test_one_prepared_workload_serves_every_card_and_count_and_the_next_request() -> None:
    recommender._REUSE.clear()
    recommend("gpt2", batch_size=8, seq_len=256, calibration=None)
    # the workload, and the amp-fp16 one the cards without bf16 are costed at
    assert sorted(v[0].precision for v in recommender._REUSE.values()) == ["amp-bf16", "amp-fp16"]
    (_source, memoized, priced) = next(v for v in recommender._REUSE.values() if v[0].precision == "amp-bf16")
    prepared = prepare_workload(memoized)
    assert len(priced) > 100  # every card x count, one workload
    recommend("gpt2", batch_size=8, seq_len=256, calibration=None)
    assert len(recommender._REUSE) == 2 and prepare_workload(memoized) is prepared


def test_a_calibration_given_as_data_is_priced_every_time(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _counting(monkeypatch)
    calibration = {"matmul": 0.5}
    recommend("gpt2", batch_size=8, seq_len=256, calibration=calibration, max_gpus=1, gpus=["h100-sxm5-80gb"])
    recommend("gpt2", batch_size=8, seq_len=256, calibration=calibration, max_gpus=1, gpus=["h100-sxm5-80gb"])
    assert seen == ["h100-sxm5-80gb", "h100-sxm5-80gb"]  # a mapping can change between calls: nothing kept


def test_a_config_file_is_built_once_until_it_changes(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    path = tmp_path / "config.json"
    config = {"model_type": "llama", "num_hidden_layers": 4, "hidden_size": 512, "num_attention_heads": 8,
              "num_key_value_heads": 8, "intermediate_size": 1376, "vocab_size": 32000}
    path.write_text(json.dumps(config))
    seen = _counting(monkeypatch)
    first = recommend(str(path), batch_size=4, seq_len=256, calibration=None, max_gpus=1)
    n = len(seen)
    assert recommend(str(path), batch_size=4, seq_len=256, calibration=None, max_gpus=1).to_dict() == first.to_dict()
    assert len(seen) == n
    path.write_text(json.dumps({**config, "num_hidden_layers": 8}))  # edited: built and priced again
    os.utime(path, ns=(1, 1))
    second = recommend(str(path), batch_size=4, seq_len=256, calibration=None, max_gpus=1)
    assert len(seen) == 2 * n and second.workload["params"] > first.workload["params"]
    # a dict config: by its content
    recommend(config, batch_size=4, seq_len=256, calibration=None, max_gpus=1)
    m = len(seen)
    recommend(dict(config), batch_size=4, seq_len=256, calibration=None, max_gpus=1)
    assert len(seen) == m


def test_replay_predicts_rows_of_one_case_once() -> None:
    from advisor.validate.records import Prediction
    from advisor.validate.replay import replay

    row = {"model": "gpt2", "config": {"mode": "infer", "batch_size": 2, "precision": "bf16", "seq_len": 64},
           "time": {"measured_s": 0.01}, "memory": {"measured_bytes": 1e9}}
    other = {**row, "config": {**row["config"], "batch_size": 4}}
    asked: list[int] = []

    def predict(case, device):  # type: ignore[no-untyped-def]
        asked.append(case.batch_size)
        return Prediction(1e9, 0.01 * case.batch_size, source="test")

    doc = {"device": {"kind": "cuda", "name": "H100", "catalog_id": "h100-sxm5-80gb"}, "rows": [row, other, row, row]}
    report = replay(doc, predict=predict)
    assert asked == [2, 4]
    assert [r.prediction.step_s for r in report.rows] == [0.02, 0.04, 0.02, 0.02]


def test_a_new_store_read_drops_what_the_old_one_priced(monkeypatch: pytest.MonkeyPatch) -> None:
    from advisor.estimator import StoredProbes

    seen = _counting(monkeypatch)
    kw = dict(batch_size=8, seq_len=256, max_gpus=2, gpus=["h100-sxm5-80gb", "a100-sxm4-80gb"])
    for _ in range(3):  # the store re-read three times (a long-lived dashboard): three pricings, one kept
        recommend("gpt2", calibration=StoredProbes(by_card={}), **kw)
    assert len(seen) == 3 * 4
    (_source, _memoized, priced) = next(
        v for v in recommender._REUSE.values()
        if (v[0].name, v[0].seq_len, v[0].batch_size, v[0].precision) == ("gpt2", 256, 8, "amp-bf16"))
    assert len(priced) == 1 + 4  # the calibration it is kept for, and one pricing of 2 cards x 2 counts
