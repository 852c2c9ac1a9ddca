"""Configs qlib accepts with meaningless results are clear errors naming the key path (issue 15 item 9)."""

from __future__ import annotations

import copy

import pytest

from qlib_prefect.config.loader import load_config, parse_yaml
from qlib_prefect.errors import ConfigError

BASE = parse_yaml("""\
qlib_init: {provider_uri: "~/.qlib/qlib_data/cn_data", region: cn}
task:
    model: {class: LGBModel, module_path: qlib.contrib.model.gbdt, kwargs: {loss: mse}}
    dataset:
        class: DatasetH
        module_path: qlib.data.dataset
        kwargs:
            handler: {class: Alpha158, module_path: qlib.contrib.data.handler,
                      kwargs: {start_time: 2008-01-01, end_time: 2020-08-01, instruments: csi300}}
            segments: {train: [2008-01-01, 2014-12-31], valid: [2015-01-01, 2016-12-31], test: [2017-01-01, 2020-08-01]}
    record:
        - {class: SignalRecord, module_path: qlib.workflow.record_temp, kwargs: {model: <MODEL>, dataset: <DATASET>}}
        - {class: SigAnaRecord, module_path: qlib.workflow.record_temp, kwargs: {ana_long_short: false}}
        - class: PortAnaRecord
          module_path: qlib.workflow.record_temp
          kwargs:
            config:
                strategy: {class: TopkDropoutStrategy, module_path: qlib.contrib.strategy,
                           kwargs: {signal: <PRED>, topk: 50, n_drop: 5}}
                backtest: {start_time: 2017-01-01, end_time: 2020-08-01, account: 100000000, benchmark: SH000300,
                           exchange_kwargs: {limit_threshold: 0.095, deal_price: close, open_cost: 0.0005,
                                             close_cost: 0.0015, min_cost: 5}}
""")
PORT = ("task", "record", 2, "kwargs", "config")


def _set(raw, path, value):
    node = raw
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value


CASES = {
    "n_drop > topk": ((*PORT, "strategy", "kwargs", "n_drop"), 60,
                      "task.record.2.kwargs.config.strategy.kwargs.n_drop: n_drop=60 is larger than topk=50"),
    "topk 0": ((*PORT, "strategy", "kwargs", "topk"), 0, "strategy.kwargs.topk: must be >= 1"),
    "account negative": ((*PORT, "backtest", "account"), -1000, "backtest.account: cash must be > 0"),
    "account zero": ((*PORT, "backtest", "account"), 0, "backtest.account: cash must be > 0"),
    "deal_price midpoint": ((*PORT, "backtest", "exchange_kwargs", "deal_price"), "midpoint", "deal_price: unknown"),
    "scalar train": (("task", "dataset", "kwargs", "segments", "train"), "2013-02-08", "segments.train: a segment"),
    "segment reversed": (("task", "dataset", "kwargs", "segments", "test"), ["2020-08-01", "2017-01-01"],
                         "segments.test: start 2020-08-01 is after end"),
    "backtest outside predictions": ((*PORT, "backtest", "end_time"), "2022-01-01",
                                     "backtest.end_time: 2022-01-01 lies outside the test segment"),
    "unknown uri scheme": (("qlib_init", "exp_manager"), {"class": "MLflowExpManager", "module_path":
                           "qlib.workflow.expm", "kwargs": {"uri": "bogus://x", "default_exp_name": "E"}},
                           "qlib_init.exp_manager.kwargs.uri: unknown tracking URI scheme 'bogus'"),
    "MODLE": (("task", "record", 0, "kwargs", "model"), "<MODLE>", "task.record.0.kwargs.model: placeholder '<MODLE>'"),
}


def test_base_is_valid():
    load_config(copy.deepcopy(BASE))


@pytest.mark.parametrize("case", sorted(CASES))
def test_nonsense_is_a_clear_error(case):
    path, value, expected = CASES[case]
    raw = copy.deepcopy(BASE)
    _set(raw, path, value)
    with pytest.raises(ConfigError) as e:
        load_config(raw)
    assert expected in str(e.value)


def test_analysis_records_without_signal_record():
    raw = copy.deepcopy(BASE)
    raw["task"]["record"] = raw["task"]["record"][1:]
    with pytest.raises(ConfigError) as e:
        load_config(raw)
    lines = str(e.value).splitlines()
    assert any(line.startswith("task.record.0.class: SigAnaRecord needs a SignalRecord") for line in lines)
    assert any(line.startswith("task.record.1.class: PortAnaRecord needs a SignalRecord") for line in lines)


def test_every_problem_is_listed_at_once():
    raw = copy.deepcopy(BASE)
    for path, value, _ in CASES.values():
        if path[:2] != ("qlib_init", "exp_manager") and "segments" not in path and value != "<MODLE>":
            _set(raw, path, value)
    with pytest.raises(ConfigError) as e:
        load_config(raw)
    assert len(str(e.value).splitlines()) >= 4


def test_yaml_alias_bomb_is_refused_quickly():
    import time

    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]")
    text = "\n".join(lines) + "\ntask: {}\n"
    t = time.monotonic()
    with pytest.raises(ConfigError, match=r"bomb\.yaml: invalid YAML.*aliases expand the document"):
        parse_yaml(text, source="bomb.yaml")
    assert time.monotonic() - t < 3


def test_online_template_backtest_may_span_past_its_test_segment():
    """An online config's task is the first window's template: `online simulate` sets the backtest to the simulated
    span, so dates past the template's test segment are no error there; the other checks still apply."""
    raw = copy.deepcopy(BASE)
    raw["online"] = {"name": "daily", "step": 20}
    _set(raw, (*PORT, "backtest", "end_time"), "2022-01-01")
    load_config(raw)
    _set(raw, (*PORT, "strategy", "kwargs", "n_drop"), 60)
    with pytest.raises(ConfigError, match="n_drop=60 is larger than topk=50"):
        load_config(raw)
