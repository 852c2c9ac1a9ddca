"""load_config: qrun semantics (Jinja2, YAML, BASE_CONFIG_PATH, sys) and validation messages."""

from __future__ import annotations

import datetime as dt
import os
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

from qlib_prefect.config.loader import (
    ConfigWarning,
    WorkflowConfig,
    load_config,
    parse_yaml,
    render_template,
    update_config,
)
from qlib_prefect.errors import ConfigError

FIXTURES = Path(__file__).parent / "fixtures"
QLIB_FIXTURES = sorted(FIXTURES.glob("workflow_config_lightgbm_*.yaml"))
ACCEPTANCE = FIXTURES / "lgb_alpha158_sp500.yaml"
ACC_ENV = {"QREF_DATA": "/data/sp500", "QREF_MLFLOW_URI": "file:/tmp/mlruns"}

MINIMAL = """\
qlib_init:
    provider_uri: "~/.qlib/qlib_data/cn_data"
    region: cn
task:
    model:
        class: LGBModel
        module_path: qlib.contrib.model.gbdt
        kwargs:
            loss: mse
            learning_rate: 0.2
    dataset:
        class: DatasetH
        module_path: qlib.data.dataset
        kwargs:
            handler:
                class: Alpha158
                module_path: qlib.contrib.data.handler
                kwargs: {start_time: 2008-01-01, end_time: 2020-08-01, instruments: csi300}
            segments:
                train: [2008-01-01, 2014-12-31]
                test: [2017-01-01, 2020-08-01]
"""


def write(folder: Path, name: str, text: str) -> Path:
    p = folder / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(textwrap.dedent(text))
    return p


def problems(excinfo: pytest.ExceptionInfo) -> list[str]:
    return str(excinfo.value).splitlines()


# ------------------------------------------------------------------------------- the qlib example files
@pytest.mark.parametrize("path", QLIB_FIXTURES, ids=lambda p: p.name)
def test_qlib_examples_load_and_validate(path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConfigWarning)
        cfg = load_config(path)
    assert cfg.experiment_name == "workflow"
    assert cfg.qlib_init == {"provider_uri": "~/.qlib/qlib_data/cn_data", "region": "cn"}
    assert [r["class"] for r in cfg.records] == ["SignalRecord", "SigAnaRecord", "PortAnaRecord"]
    assert cfg.spec is not None and cfg.spec.task.model["class"] == "LGBModel"
    assert cfg.spec.model_extra is not None and "port_analysis_config" in cfg.spec.model_extra


def test_alpha158_values_as_qrun_sees_them() -> None:
    cfg = load_config(FIXTURES / "workflow_config_lightgbm_Alpha158.yaml")
    task = cfg.task
    assert task["model"]["kwargs"] == {
        "loss": "mse", "colsample_bytree": 0.8879, "learning_rate": 0.2, "subsample": 0.8789,
        "lambda_l1": 205.6999, "lambda_l2": 580.9768, "max_depth": 8, "num_leaves": 210, "num_threads": 20,
    }  # fmt: skip
    hk = task["dataset"]["kwargs"]["handler"]["kwargs"]
    assert hk == {
        "start_time": dt.date(2008, 1, 1), "end_time": dt.date(2020, 8, 1), "fit_start_time": dt.date(2008, 1, 1),
        "fit_end_time": dt.date(2014, 12, 31), "instruments": "csi300",
    }  # fmt: skip
    assert task["dataset"]["kwargs"]["segments"]["test"] == [dt.date(2017, 1, 1), dt.date(2020, 8, 1)]
    assert task["record"][0]["kwargs"] == {"model": "<MODEL>", "dataset": "<DATASET>"}
    assert task["record"][1]["kwargs"] == {"ana_long_short": False, "ann_scaler": 252}
    port = task["record"][2]["kwargs"]["config"]
    assert port["strategy"]["kwargs"] == {"signal": "<PRED>", "topk": 50, "n_drop": 5}
    assert port["backtest"]["benchmark"] == "SH000300" and port["backtest"]["account"] == 100000000
    assert port == cfg.raw["port_analysis_config"]  # the anchor


@pytest.mark.parametrize("path", [*QLIB_FIXTURES, ACCEPTANCE], ids=lambda p: p.name)
def test_same_dict_as_qrun_parser(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """qrun's own steps (jinja2 Template + ruamel safe/pure) give the same dict as load_config."""
    ruamel = pytest.importorskip("ruamel.yaml")
    from jinja2 import Template, meta

    for k, v in ACC_ENV.items():
        monkeypatch.setenv(k, v)
    text = path.read_text()
    template = Template(text)
    names = meta.find_undeclared_variables(template.environment.parse(text))
    import os

    rendered = template.render({n: os.getenv(n, "") for n in names if n in os.environ})
    expected = ruamel.YAML(typ="safe", pure=True).load(rendered)
    assert load_config(path).raw == expected


def test_yaml_scalars_follow_yaml_12_like_qrun() -> None:
    ruamel = pytest.importorskip("ruamel.yaml")
    text = textwrap.dedent(
        """\
        a: [yes, no, on, off, y, true, True, FALSE, ~, null]
        b: [1e-3, 1E5, 1.0e+3, .5, 5., +1, -1, 0o17, 017, 0x1F, 1_000, 1:20, .inf, -.Inf, 0b101, 1e3]
        c: [2008-01-01, 2008-1-1, 2008-01-01 10:00:00, 20080101, '2008-01-01', <PRED>]
        """
    )
    ours = parse_yaml(text)
    assert ours == ruamel.YAML(typ="safe", pure=True).load(text)
    assert ours["a"][:4] == ["yes", "no", "on", "off"] and ours["b"][0] == 0.001 and ours["b"][8] == 17
    assert ours["c"][0] == dt.date(2008, 1, 1) and ours["c"][4] == "2008-01-01"


def test_duplicate_key_and_bad_yaml_name_the_file(tmp_path: Path) -> None:
    p = write(tmp_path, "dup.yaml", "task:\n    model: 1\n    model: 2\n")
    with pytest.raises(ConfigError, match=r"dup\.yaml: invalid YAML at line 3.*duplicate key 'model'"):
        load_config(p)
    p = write(tmp_path, "bad.yaml", "task: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: invalid YAML"):
        load_config(p)
    p = write(tmp_path, "list.yaml", "- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        load_config(p)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_merge_keys_are_not_duplicates() -> None:
    data = parse_yaml("base: &b {x: 1, y: 2}\nchild:\n    <<: *b\n    y: 3\n")
    assert data["child"] == {"x": 1, "y": 3}


# ----------------------------------------------------------------------------------------------- Jinja2
def test_acceptance_config_with_env() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConfigWarning)
        cfg = load_config(ACCEPTANCE, env=ACC_ENV)
    assert cfg.qlib_init["provider_uri"] == "/data/sp500"
    assert cfg.qlib_init["exp_manager"]["kwargs"] == {"uri": "file:/tmp/mlruns", "default_exp_name": "Experiment"}
    strat = cfg.records[2]["kwargs"]["config"]["strategy"]["kwargs"]
    assert strat == {"signal": "<PRED>", "topk": 50, "n_drop": 5}
    assert cfg.records[2]["kwargs"]["config"]["backtest"]["exchange_kwargs"]["limit_threshold"] is None
    cfg2 = load_config(ACCEPTANCE, env={**ACC_ENV, "QREF_TOPK": "30"})
    assert cfg2.records[2]["kwargs"]["config"]["strategy"]["kwargs"]["topk"] == 30


def test_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QREF_DATA", "/from/environ")
    monkeypatch.setenv("QREF_MLFLOW_URI", "file:/x")
    assert load_config(ACCEPTANCE).qlib_init["provider_uri"] == "/from/environ"


def test_undefined_variables_are_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """qrun renders an undefined variable as '' (provider_uri silently became the current directory): here it is
    an error naming the file and every undefined variable; a default() still works (issue 15 item 12)."""
    monkeypatch.delenv("QREF_DATA", raising=False)
    monkeypatch.delenv("QREF_MLFLOW_URI", raising=False)
    with pytest.raises(ConfigError, match=r"undefined template variable\(s\) QREF_DATA, QREF_MLFLOW_URI") as ei:
        load_config(ACCEPTANCE)
    assert ACCEPTANCE.name in str(ei.value)
    text, undefined = render_template("a: {{ A | default(5) }}\n", env={})
    assert text == "a: 5\n" and undefined == []
    with pytest.raises(ConfigError, match="B"):
        render_template("b: '{{ B }}'\n", env={}, source="x.yaml")


def test_template_errors(tmp_path: Path) -> None:
    p = write(tmp_path, "t.yaml", "a: {{ X \n")
    with pytest.raises(ConfigError, match=r"t\.yaml: line 1: Jinja2 template error"):
        load_config(p)


# ------------------------------------------------------------------------------------- BASE_CONFIG_PATH
def test_update_config_like_qlib() -> None:
    bc = {"a": "xixi"}
    assert update_config(bc, {"b": "haha"}) == {"a": "xixi", "b": "haha"}
    assert bc == {"a": "xixi"}
    assert update_config({"a": "xixi", "b": "haha"}, {"b": "__DROP__"}) == {"a": "xixi"}
    assert update_config({"a": 1}, {"b": "__DROP__"}) == {"a": 1}
    base = {"x": {"y": 1, "z": {"k": 2}}, "l": [1, 2]}
    assert update_config(base, [{"x": {"z": {"k": 3}}}, {"l": [9]}]) == {"x": {"y": 1, "z": {"k": 3}}, "l": [9]}


def test_base_config_merge_and_drop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "conf/base.yaml", MINIMAL + "experiment_name: base_exp\nmarket: csi300\n")
    child = write(
        tmp_path,
        "conf/child.yaml",
        """\
        BASE_CONFIG_PATH: base.yaml
        market: csi500
        experiment_name: __DROP__
        task:
            model:
                kwargs:
                    learning_rate: 0.05
            dataset:
                kwargs:
                    segments:
                        test: __DROP__
        """,
    )
    monkeypatch.chdir(tmp_path)  # the base is found relative to the child's directory, not the cwd
    cfg = load_config(child)
    assert cfg.raw["BASE_CONFIG_PATH"] == "base.yaml"
    assert cfg.raw["market"] == "csi500"
    assert "experiment_name" not in cfg.raw and cfg.experiment_name == "workflow"
    assert cfg.task["model"]["kwargs"] == {"loss": "mse", "learning_rate": 0.05}
    assert set(cfg.task["dataset"]["kwargs"]["segments"]) == {"train"}
    assert cfg.sources[0] == str(child) and cfg.sources[1].endswith("base.yaml")


def test_nested_base_missing_base_and_cycle(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", MINIMAL + "market: a\nbenchmark: a\n")
    write(tmp_path, "sub/b.yaml", "BASE_CONFIG_PATH: ../a.yaml\nmarket: b\n")
    c = write(tmp_path, "c.yaml", "BASE_CONFIG_PATH: sub/b.yaml\nbenchmark: c\n")
    cfg = load_config(c)
    assert (cfg.raw["market"], cfg.raw["benchmark"]) == ("b", "c")
    assert cfg.task["model"]["class"] == "LGBModel"
    m = write(tmp_path, "m.yaml", "BASE_CONFIG_PATH: nowhere.yaml\n")
    with pytest.raises(ConfigError, match=r"cannot find the base config 'nowhere\.yaml' \(file .*m\.yaml\)"):
        load_config(m)
    write(tmp_path, "x.yaml", "BASE_CONFIG_PATH: y.yaml\n")
    y = write(tmp_path, "y.yaml", "BASE_CONFIG_PATH: x.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(y)


def test_error_names_the_file_that_holds_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "base.yaml", MINIMAL.replace("learning_rate: 0.2", "learning_rat: 0.2"))
    child = "BASE_CONFIG_PATH: base.yaml\ntask:\n    model:\n        kwargs:\n            lossy: 1\n"
    write(tmp_path, "child.yaml", child)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as e:
        load_config("child.yaml")
    base = str((tmp_path / "base.yaml").resolve())
    assert problems(e) == [
        f"task.model.kwargs.learning_rat: unknown parameter for LGBModel; did you mean 'learning_rate'? (file {base})",
        "task.model.kwargs.lossy: unknown parameter for LGBModel; did you mean 'loss'? (file child.yaml)",
    ]


# ------------------------------------------------------------------------------------------------- sys
def test_sys_path_and_user_classes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    write(
        tmp_path,
        "lib/my_models.py",
        """\
        class MyModel:
            def __init__(self, *, alpha, beta=1.0):
                self.alpha, self.beta = alpha, beta

        class OpenModel:
            def __init__(self, depth=3, **kwargs):
                self.kw = kwargs
        """,
    )
    text = MINIMAL.replace("class: LGBModel\n        module_path: qlib.contrib.model.gbdt", "class: MyModel\n"
                           "        module_path: my_models")  # fmt: skip
    text = text.replace("loss: mse\n            learning_rate: 0.2", "alpha: 1")
    p = write(tmp_path, "w.yaml", "sys:\n    rel_path: lib\n    path: [/nonexistent/abs]\n" + text)
    cfg = load_config(p)
    lib = str((tmp_path / "lib").resolve())
    assert sys.path.count(lib) == 1 and "/nonexistent/abs" in sys.path
    load_config(p)  # idempotent
    assert sys.path.count(lib) == 1 and sys.path.count("/nonexistent/abs") == 1
    assert cfg.task["model"]["class"] == "MyModel"

    monkeypatch.chdir(tmp_path)
    bad = write(tmp_path, "bad.yaml", "sys:\n    rel_path: lib\n" + text.replace("alpha: 1", "alpah: 1"))
    with pytest.raises(ConfigError) as e:
        load_config("bad.yaml")
    assert problems(e) == [
        "task.model.kwargs.alpah: unknown parameter for MyModel; did you mean 'alpha'? (file bad.yaml)",
        "task.model.kwargs: missing required parameter 'alpha' for MyModel (file bad.yaml)",
    ]
    # a foreign class with **kwargs accepts anything
    open_text = text.replace("MyModel", "OpenModel").replace("alpha: 1", "alpha: 1\n            anything: 2")
    open_ = write(tmp_path, "open.yaml", "sys:\n    rel_path: lib\n" + open_text)
    assert load_config(open_).task["model"]["kwargs"] == {"alpha": 1, "anything": 2}
    assert bad.exists()


# ------------------------------------------------------------------------------------------ validation
def test_misspelled_model_param_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "workflow.yaml", MINIMAL.replace("learning_rate", "learning_rat"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as e:
        load_config("workflow.yaml")
    assert str(e.value) == (
        "task.model.kwargs.learning_rat: unknown parameter for LGBModel; did you mean 'learning_rate'? "
        "(file workflow.yaml)"
    )
    assert e.value.problems == [str(e.value)]  # type: ignore[attr-defined]


def test_lightgbm_params_and_aliases(tmp_path: Path) -> None:
    ok = MINIMAL.replace(
        "learning_rate: 0.2",
        "learning_rate: 0.2\n            reg_alpha: 1\n            subsample_freq: 1\n            seed: 3\n"
        "            early_stopping_rounds: 20\n            num_boost_round: 50\n            verbose: -1",
    )
    cfg = load_config(write(tmp_path, "ok.yaml", ok))
    assert cfg.task["model"]["kwargs"]["reg_alpha"] == 1
    bad = MINIMAL.replace("learning_rate: 0.2", "learning_rate: 0.2\n            colsample_bytre: 0.8\n"
                          "            zzz_qq: 1")  # fmt: skip
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, "bad.yaml", bad))
    lines = problems(e)
    assert lines[0].startswith(
        "task.model.kwargs.colsample_bytre: unknown parameter for LGBModel; did you mean 'colsample_bytree'?"
    )
    assert lines[1].startswith("task.model.kwargs.zzz_qq: unknown parameter for LGBModel (not one of its arguments")


def test_all_problems_reported_together() -> None:
    raw = parse_yaml((FIXTURES / "workflow_config_lightgbm_Alpha158.yaml").read_text())
    task = raw["task"]
    task["recrod"] = []
    task["dataset"]["kwargs"]["handler"]["kwargs"]["fit_strat_time"] = "2008-01-01"
    task["dataset"]["kwargs"]["handler"]["kwargs"]["learn_processors"] = [
        {"class": "DropnaLabel"},
        {"class": "CSZScoreNorm", "kwargs": {"field_group": "label"}},
    ]
    task["record"][1]["kwargs"]["ana_long_shrt"] = True
    port = task["record"][2]["kwargs"]["config"]
    port["backtest"]["exchange_kwargs"]["open_cots"] = 0.1
    port["backtest"]["benchmak"] = "SH000300"
    port["strategy"]["kwargs"]["topkk"] = port["strategy"]["kwargs"].pop("topk")
    port["executor"] = {"class": "SimulatorExecutor", "module_path": "qlib.backtest.executor",
                        "kwargs": {"time_per_step": "day", "generate_portfolio_metric": True}}  # fmt: skip
    task["model"]["kwarg"] = {}
    with pytest.raises(ConfigError) as e:
        load_config(raw)
    assert sorted(problems(e)) == sorted(
        [
            "task.recrod: unknown key; did you mean 'record'?",
            "task.model.kwarg: unknown key; did you mean 'kwargs'?",
            "task.dataset.kwargs.handler.kwargs.fit_strat_time: unknown parameter for Alpha158; "
            "did you mean 'fit_start_time'?",
            "task.dataset.kwargs.handler.kwargs.learn_processors.1.kwargs.field_group: unknown parameter for "
            "CSZScoreNorm; did you mean 'fields_group'?",
            "task.record.1.kwargs.ana_long_shrt: unknown parameter for SigAnaRecord; did you mean 'ana_long_short'?",
            "task.record.2.kwargs.config.backtest.exchange_kwargs.open_cots: unknown key; did you mean 'open_cost'?",
            "task.record.2.kwargs.config.backtest.benchmak: unknown key; did you mean 'benchmark'?",
            "task.record.2.kwargs.config.strategy.kwargs.topkk: unknown parameter for TopkDropoutStrategy; "
            "did you mean 'topk'?",
            "task.record.2.kwargs.config.strategy.kwargs: missing required parameter 'topk' for TopkDropoutStrategy",
            "task.record.2.kwargs.config.executor.kwargs.generate_portfolio_metric: unknown parameter for "
            "SimulatorExecutor; did you mean 'generate_portfolio_metrics'?",
        ]
    )


def test_unknown_classes_and_missing_sections() -> None:
    raw = parse_yaml(MINIMAL)
    raw["task"]["model"]["class"] = "LGBModle"
    raw["task"]["dataset"]["kwargs"]["handler"]["class"] = "Alpha185"
    with pytest.raises(ConfigError) as e:
        load_config(raw)
    assert problems(e) == [
        "task.model.class: unknown class 'LGBModle' (module_path 'qlib.contrib.model.gbdt'); did you mean 'LGBModel'?",
        "task.dataset.kwargs.handler.class: unknown class 'Alpha185' (module_path 'qlib.contrib.data.handler'); "
        "did you mean 'Alpha158'?",
    ]
    with pytest.raises(ConfigError, match=r"^task: required key missing; did you mean 'tsak' -> 'task'\?$"):
        load_config({"qlib_init": {}, "tsak": {}})
    with pytest.raises(ConfigError, match=r"task.dataset: required key missing"):
        load_config({"task": {"model": {"class": "LGBModel"}}})
    with pytest.raises(ConfigError, match=r"qlib_init.region: unknown region 'eu'"):
        load_config({**parse_yaml(MINIMAL), "qlib_init": {"region": "eu"}})


def test_kwargs_follow_base_classes() -> None:
    """qlib-prefect classes forward **kwargs to their base: Alpha158 accepts DataHandler's arguments,
    DatasetH rejects unknown ones (its root **kwargs is checked by the class itself)."""
    raw = parse_yaml(MINIMAL)
    raw["task"]["dataset"]["kwargs"]["handler"]["kwargs"].update(shared_processors=[], fetch_orig=True, drop_raw=True)
    load_config(raw)
    raw["task"]["dataset"]["kwargs"]["segmentz"] = {}
    with pytest.raises(ConfigError, match=r"^task.dataset.kwargs.segmentz: unknown parameter for DatasetH; "
                                          r"did you mean 'segments'\?$"):  # fmt: skip
        load_config(raw)


def test_qlib_init_unknown_keys_warn_only(tmp_path: Path) -> None:
    p = write(tmp_path, "w.yaml", MINIMAL.replace("region: cn", "region: cn\n    regin: us\n    my_flag: 1")
              + "experiment_nme: x\n")  # fmt: skip
    with pytest.warns(ConfigWarning) as rec:
        cfg = load_config(p)
    msgs = [str(w.message) for w in rec]
    assert any("qlib_init.regin: unrecognized qlib config key" in m and "did you mean 'region'?" in m for m in msgs)
    assert any("qlib_init.my_flag: unrecognized" in m for m in msgs)
    assert any("experiment_nme: unknown top-level key" in m and "'experiment_name'" in m for m in msgs)
    assert cfg.qlib_init["my_flag"] == 1 and cfg.raw["experiment_nme"] == "x"


def test_exp_manager_is_validated() -> None:
    cfg = load_config(ACCEPTANCE, env=ACC_ENV)
    raw = cfg.to_dict()
    raw["qlib_init"]["exp_manager"]["kwargs"]["default_exp_nam"] = "x"
    with pytest.raises(ConfigError, match=r"qlib_init.exp_manager.kwargs.default_exp_nam: unknown parameter for "
                                          r"MLflowExpManager; did you mean 'default_exp_name'\?"):  # fmt: skip
        load_config(raw)


def test_validation_levels() -> None:
    raw = parse_yaml(MINIMAL)
    raw["task"]["model"]["class"] = "NoSuchModel"
    assert load_config(raw, validate="structure").spec is not None
    assert load_config(raw, validate=False).spec is None
    raw["task"]["modle"] = {}
    with pytest.raises(ConfigError, match=r"task\.modle: unknown key; did you mean 'model'"):
        load_config(raw, validate="structure")
    with pytest.raises(ConfigError, match="validate must be"):
        load_config(raw, validate="deep")


def test_single_record_and_string_class_configs() -> None:
    raw = parse_yaml(MINIMAL)
    raw["task"]["record"] = {"class": "SignalRecord", "kwargs": {"model": "<MODEL>", "dataset": "<DATASET>"}}
    raw["task"]["dataset"]["kwargs"]["handler"] = "file:///tmp/handler.pkl"
    cfg = load_config(raw)
    assert cfg.records == [raw["task"]["record"]]
    raw["task"]["record"]["kwargs"]["modle"] = 1
    with pytest.raises(ConfigError, match=r"^task.record.kwargs.modle: unknown parameter for SignalRecord"):
        load_config(raw)


# ----------------------------------------------------------------------------------------- WorkflowConfig
def test_workflow_config_accessors_and_hashes(tmp_path: Path) -> None:
    cfg = load_config(FIXTURES / "workflow_config_lightgbm_Alpha158.yaml")
    task = cfg.task
    task["record"][0]["kwargs"]["model"] = object()  # what a trainer's fill_placeholder does
    assert cfg.raw["task"]["record"][0]["kwargs"]["model"] == "<MODEL>"
    assert cfg.section("task.record.2.kwargs.config.backtest.benchmark") == "SH000300"
    assert cfg.section("task.dataset.kwargs.segments.train.0") == dt.date(2008, 1, 1)
    with pytest.raises(ConfigError, match=r"no section 'task\.modle'"):
        cfg.section("task.modle")
    # same model/dataset written differently (key order, quoted dates) -> same hashes; other learning rate differs
    reordered = write(
        tmp_path,
        "r.yaml",
        """\
        task:
            dataset:
                module_path: qlib.data.dataset
                class: DatasetH
                kwargs:
                    segments:
                        test: ["2017-01-01", "2020-08-01"]
                        valid: ["2015-01-01", "2016-12-31"]
                        train: ["2008-01-01", "2014-12-31"]
                    handler:
                        module_path: qlib.contrib.data.handler
                        class: Alpha158
                        kwargs: {instruments: csi300, fit_end_time: "2014-12-31", fit_start_time: 2008-01-01,
                                 end_time: 2020-08-01, start_time: 2008-01-01}
            model:
                class: LGBModel
                module_path: qlib.contrib.model.gbdt
                kwargs: {num_threads: 20, num_leaves: 210, max_depth: 8, lambda_l2: 580.9768, lambda_l1: 205.6999,
                         subsample: 0.8789, learning_rate: 0.2, colsample_bytree: 0.8879, loss: mse}
        """,
    )
    other = load_config(reordered)
    assert other.config_hash("task.dataset") == cfg.config_hash("task.dataset")
    assert other.config_hash("task.model") == cfg.config_hash("task.model")
    a360 = load_config(FIXTURES / "workflow_config_lightgbm_Alpha360.yaml")
    assert a360.config_hash("task.model") != cfg.config_hash("task.model")
    assert a360.config_hash("task.record.2") == cfg.config_hash("task.record.2")
    assert len(cfg.config_hash()) == 16 and cfg.config_hash() != a360.config_hash()


def test_to_yaml_round_trip(tmp_path: Path) -> None:
    cfg = load_config(ACCEPTANCE, env=ACC_ENV)
    raw = cfg.to_dict()
    raw["odd_strings"] = ["1e-3", "yes", "2008-01-01", "017", "<PRED>", "true"]
    raw["odd_values"] = [1e-3, True, None, dt.date(2008, 1, 1), dt.datetime(2008, 1, 1, 9, 30), (1, 2)]
    text = WorkflowConfig(raw=raw).to_yaml()
    p = tmp_path / "round.yaml"
    p.write_text(text)
    back = load_config(p).raw
    assert back["odd_values"][-1] == [1, 2]
    back["odd_values"][-1] = (1, 2)
    assert back == raw
    with pytest.raises(ConfigError, match="cannot write a object value"):
        WorkflowConfig(raw={"x": object()}).to_yaml()


def test_dict_input_is_not_modified() -> None:
    raw = parse_yaml(MINIMAL)
    snapshot = parse_yaml(MINIMAL)
    cfg = load_config(raw)
    cfg.raw["task"]["model"]["kwargs"]["learning_rate"] = 1.0
    assert raw == snapshot
    assert cfg.path is None and cfg.config_dir == Path.cwd()
    assert load_config(cfg) is cfg


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda r: r.__setitem__("task", []), "task: expected a mapping, got list"),
        (lambda r: r["task"].__setitem__("model", None),
         "task.model: expected a class config {class, module_path, kwargs}, got null"),
        (lambda r: r["task"]["model"].__setitem__("kwargs", [1, 2]), "task.model.kwargs: expected a mapping, got list"),
        (lambda r: r["task"]["model"]["kwargs"].__setitem__(5, 1), "task.model.kwargs.5: keys must be strings (got 5)"),
        (lambda r: r["task"]["model"].__setitem__("class", 5), "task.model.class: expected a class name, got int"),
        (lambda r: r.__setitem__("sys", {"path": 5}), "sys.path: expected a path or a list of paths, got 5"),
        (lambda r: r.__setitem__("experiment_name", ""), "experiment_name: must be a non-empty string (got '')"),
        (lambda r: r["task"].__setitem__("record", [{"class": "SignalRecord"},
                                                    {"class": "PortAnaRecord", "kwargs": {"config": [1]}}]),
         "task.record.1.kwargs.config: expected a mapping, got list"),
        (lambda r: r["task"].__setitem__("record", [{"class": "SignalRecord"}, {"class": "PortAnaRecord", "kwargs": {
            "config": {"strategy": {"class": "TopkDropoutStrategy", "kwargs": {"topk": 1, "n_drop": 1}}}}}]),
         "task.record.1.kwargs.config.backtest: required key missing"),
        (lambda r: r["task"]["model"].__setitem__("module_path", "no_such_module_xyz"),
         "task.model.class: cannot import module 'no_such_module_xyz' for class 'LGBModel': "
         "No module named 'no_such_module_xyz'"),
    ],
)  # fmt: skip
def test_wrong_shapes_give_one_clear_line(mutate, expected: str) -> None:
    raw = parse_yaml(MINIMAL)
    mutate(raw)
    with pytest.raises(ConfigError) as e:
        load_config(raw)
    assert problems(e) == [expected]


QLIB_MORE = sorted((FIXTURES / "qlib_examples").glob("*.yaml"))


@pytest.mark.parametrize("path", QLIB_MORE, ids=lambda p: p.name)
def test_more_qlib_examples_pass_structure_validation(path: Path) -> None:
    cfg = load_config(path, validate="structure", apply_sys=False)
    assert cfg.spec is not None and cfg.records


def test_qlib_examples_with_unsupported_parts_fail_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    more = FIXTURES / "qlib_examples"
    monkeypatch.chdir(more)
    with pytest.raises(ConfigError) as e:
        load_config("workflow_config_xgboost_Alpha158.yaml")
    assert problems(e) == [
        "task.model.class: unknown class 'XGBModel' (module_path 'qlib.contrib.model.xgboost'); did you mean "
        "'LGBModel'? (file workflow_config_xgboost_Alpha158.yaml)"
    ]
    # a stale qlib example: Exchange arguments directly under `backtest` (qlib 0.9.7's backtest() rejects them too)
    with pytest.raises(ConfigError) as e:
        load_config("workflow_config_lightgbm_Alpha158_multi_freq.yaml")
    lines = [x for x in problems(e) if ".backtest." in x]
    assert "task.record.2.kwargs.config.backtest.open_cost: unknown key; an Exchange argument belongs under " \
           "'exchange_kwargs.open_cost' (file workflow_config_lightgbm_Alpha158_multi_freq.yaml)" in lines
    assert any(x.startswith("task.record.2.kwargs.config.backtest.verbose: unknown key; allowed: ") for x in lines)


_ORACLE = os.environ.get("QLIB_ORACLE_PYTHON", "")
_ORACLE_SCRIPT = r"""
import json, sys
from pathlib import Path
from ruamel.yaml import YAML
from qlib.cli.run import render_template
from qlib.utils.data import update_config

path = sys.argv[1]
config = YAML(typ="safe", pure=True).load(render_template(path))  # qrun's workflow(), up to the merge
if config.get("BASE_CONFIG_PATH"):
    base = Path(path).absolute().parent / config["BASE_CONFIG_PATH"]
    with open(base) as fp:
        config = update_config(YAML(typ="safe", pure=True).load(fp), config)
print(json.dumps(config, sort_keys=True, default=repr))
"""


@pytest.mark.qlib
@pytest.mark.skipif(not _ORACLE or not Path(_ORACLE).exists(), reason="set QLIB_ORACLE_PYTHON to the real qlib venv")
def test_real_qrun_sees_the_same_config(tmp_path: Path) -> None:
    import json
    import shutil
    import subprocess

    # (qrun does not render a base file with Jinja2, so the base here has no template syntax)
    shutil.copy(FIXTURES / "workflow_config_lightgbm_Alpha158.yaml", tmp_path / "base.yaml")
    write(
        tmp_path,
        "child.yaml",
        """\
        BASE_CONFIG_PATH: base.yaml
        market: &market csi300
        experiment_name: "{{ EXP_NAME }}"
        task:
            model:
                kwargs:
                    learning_rate: 1e-2
                    num_threads: __DROP__
            record: __DROP__
        """,
    )
    env = {**os.environ, **ACC_ENV, "EXP_NAME": "oracle", "MLFLOW_ALLOW_FILE_STORE": "true",
           "MLFLOW_DISABLE_TELEMETRY": "true"}  # fmt: skip
    for name in ("base.yaml", "child.yaml", str(ACCEPTANCE), *(str(p) for p in QLIB_FIXTURES)):
        r = subprocess.run([_ORACLE, "-c", _ORACLE_SCRIPT, name], capture_output=True, text=True, env=env,
                           cwd=tmp_path, timeout=300, check=True)  # fmt: skip
        theirs = json.loads(r.stdout.strip().splitlines()[-1])
        p = Path(name) if Path(name).is_absolute() else tmp_path / name
        ours = json.loads(json.dumps(load_config(p, env=env, validate=False).raw, sort_keys=True, default=repr))
        assert ours == theirs, name
    cfg = load_config(tmp_path / "child.yaml", env=env)
    assert cfg.experiment_name == "oracle" and cfg.task["model"]["kwargs"]["learning_rate"] == 0.01
    assert "num_threads" not in cfg.task["model"]["kwargs"] and "record" not in cfg.task


def test_experiment_name_precedence() -> None:
    raw = parse_yaml(MINIMAL)
    cfg = load_config(raw)
    assert cfg.experiment_name == "workflow" and cfg.resolve_experiment_name("cli_name") == "cli_name"
    cfg = load_config({**raw, "experiment_name": "from_config"})
    assert cfg.experiment_name == "from_config" and cfg.resolve_experiment_name("cli_name") == "from_config"


def test_lightgbm_names_bundled_list(monkeypatch: pytest.MonkeyPatch) -> None:
    from qlib_prefect.config import loader
    from qlib_prefect.config._lightgbm_params import LIGHTGBM_PARAM_ALIASES

    bundled = set(LIGHTGBM_PARAM_ALIASES) | {a for v in LIGHTGBM_PARAM_ALIASES.values() for a in v}
    installed = loader.lightgbm_param_names()
    assert {"learning_rate", "lambda_l1", "reg_alpha", "num_threads", "colsample_bytree", "verbosity"} <= installed
    import lightgbm.basic as lgb_basic  # a runtime dependency: never skipped
    assert bundled <= installed  # the installed lightgbm knows at least what 4.7.0 knew
    monkeypatch.delattr(lgb_basic, "_ConfigAliases")
    loader.lightgbm_param_names.cache_clear()
    try:
        assert loader.lightgbm_param_names() == frozenset(bundled)
    finally:
        loader.lightgbm_param_names.cache_clear()


def test_placeholders_left_untouched_and_typos_warned() -> None:
    raw = parse_yaml(MINIMAL)
    hk = raw["task"]["dataset"]["kwargs"]["handler"]["kwargs"]
    hk["fit_start_time"] = "<dataset.kwargs.segments.train.0>"
    hk["fit_end_time"] = "<dataset.kwargs.segments.train.1>"
    raw["task"]["record"] = [{"class": "SignalRecord", "kwargs": {"model": "<MODEL>", "dataset": "<DATASET>"}}]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConfigWarning)
        cfg = load_config(raw)
    assert cfg.task["dataset"]["kwargs"]["handler"]["kwargs"]["fit_start_time"] == "<dataset.kwargs.segments.train.0>"
    hk["fit_end_time"] = "<dataset.kwargs.segments.trian.1>"
    with pytest.warns(ConfigWarning) as rec:
        cfg = load_config(raw)
    assert sorted(cfg.warnings) == [
        "task.dataset.kwargs.handler.kwargs.fit_end_time: placeholder '<dataset.kwargs.segments.trian.1>' does not "
        "resolve inside task (left unchanged)",
    ]
    assert len(rec) == 1
    raw["task"]["record"][0]["kwargs"]["model"] = "<MODLE>"  # qlib passes the string on: a raw error later
    with pytest.raises(ConfigError, match=r"task\.record\.0\.kwargs\.model: placeholder '<MODLE>' is not one qlib "
                       r"fills at run time; did you mean '<MODEL>'\?"):
        load_config(raw)
