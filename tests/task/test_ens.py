"""Group / RollingGroup / RollingEnsemble / AverageEnsemble / SingleKeyEnsemble (qlib/model/ens semantics)."""

from __future__ import annotations

import importlib.util
import os
import pickle
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qlib_prefect.config.classpath import resolve_class
from qlib_prefect.errors import ConfigError
from qlib_prefect.task import ens
from qlib_prefect.task.ens import (
    AverageEnsemble,
    Group,
    RollingEnsemble,
    RollingGroup,
    SingleKeyEnsemble,
    flatten_tuple_keys,
)

INSTS = ["A", "B", "C", "D"]
_ORACLE = os.environ.get("QLIB_ORACLE_PYTHON", "")


def frame(dates: list[str], seed: int, col: str = "score", insts: list[str] = INSTS) -> pd.DataFrame:
    idx = pd.MultiIndex.from_product([pd.to_datetime(dates), insts], names=["datetime", "instrument"])
    rng = np.random.default_rng(seed)
    return pd.DataFrame({col: rng.standard_normal(len(idx))}, index=idx)


def test_qlib_class_paths_resolve_here() -> None:
    for name in ("Group", "RollingGroup", "RollingEnsemble", "AverageEnsemble", "SingleKeyEnsemble"):
        assert resolve_class(name, "qlib.model.ens.ensemble") is getattr(ens, name)


def test_rolling_ensemble_later_window_wins_and_sorted() -> None:
    w1 = frame(["2020-01-02", "2020-01-03", "2020-01-06"], seed=1)
    w2 = frame(["2020-01-06", "2020-01-07"], seed=2)  # overlaps w1 on 2020-01-06
    w3 = frame(["2020-01-08"], seed=3)
    # dict order deliberately not chronological: pieces are ordered by their first datetime
    out = RollingEnsemble()({"c": w3, "b": w2, "a": w1})
    assert out.index.is_monotonic_increasing and not out.index.has_duplicates
    assert list(out.index.get_level_values("datetime").unique().strftime("%m-%d")) == [
        "01-02", "01-03", "01-06", "01-07", "01-08"]
    pd.testing.assert_frame_equal(out.loc["2020-01-06"], w2.loc["2020-01-06"])  # the later window wins
    pd.testing.assert_frame_equal(out.loc["2020-01-03"], w1.loc["2020-01-03"])
    # identical to qlib's literal algorithm
    pieces = sorted([w3, w2, w1], key=lambda x: x.index.get_level_values("datetime").min())
    ref = pd.concat(pieces)
    pd.testing.assert_frame_equal(out, ref[~ref.index.duplicated(keep="last")].sort_index())


def test_rolling_ensemble_series_and_errors() -> None:
    s1, s2 = frame(["2020-01-02"], 1)["score"], frame(["2020-01-02", "2020-01-03"], 2)["score"]
    out = RollingEnsemble()({"x": s1, "y": s2})
    assert isinstance(out, pd.Series)
    pd.testing.assert_series_equal(out, s2)  # same first date: stable order keeps y last -> y wins
    with pytest.raises(ConfigError, match="datetime"):
        RollingEnsemble()({"x": pd.Series([1.0], index=pd.Index(["a"], name="code"))})
    with pytest.raises(ConfigError, match="empty"):
        RollingEnsemble()({})


def test_rolling_group_groups_by_key_prefix() -> None:
    w1, w2 = frame(["2020-01-02"], 1), frame(["2020-01-03"], 2)
    g = RollingGroup()
    grouped = g.group({("LGB", "Alpha158", "r1"): w1, ("LGB", "Alpha158", "r2"): w2, ("MLP", "r1"): w1})
    assert list(grouped) == [("LGB", "Alpha158"), ("MLP",)]
    assert list(grouped[("LGB", "Alpha158")]) == ["r1", "r2"]
    out = g({("LGB", "r2"): w2, ("LGB", "r1"): w1, ("MLP", "r1"): w2})
    assert list(out) == [("LGB",), ("MLP",)]
    pd.testing.assert_frame_equal(out[("LGB",)], pd.concat([w1, w2]).sort_index())
    with pytest.raises(TypeError, match="tuple"):
        g({"not-a-tuple": w1})


def reference_average(members: list[pd.DataFrame]) -> pd.Series:
    """Hand-computed: per datetime, (x - mean) / std(ddof=1) per member, then the mean over members."""
    cols = []
    for m in members:
        x = m.iloc[:, 0]
        by_day = x.groupby(level="datetime")
        cols.append((x - by_day.transform(lambda v: v.sum() / v.count()))
                    / by_day.transform(lambda v: np.sqrt(((v - v.mean()) ** 2).sum() / (v.count() - 1))))
    df = pd.concat(cols, axis=1)
    return (df.sum(axis=1) / df.notna().sum(axis=1)).sort_index()


def test_average_ensemble_math() -> None:
    dates = ["2020-01-03", "2020-01-02", "2020-01-06"]
    a, b = frame(dates, 1), frame(dates, 2) * 10 + 3
    c = frame(dates, 3).iloc[:-1]  # one missing row: outer join, NaN skipped in the row mean
    out = AverageEnsemble()({"a": a, "b": b, "c": c})
    assert isinstance(out, pd.Series) and out.index.is_monotonic_increasing
    ref = reference_average([a, b, c])
    pd.testing.assert_series_equal(out, ref, check_names=False, rtol=1e-12, atol=1e-12)
    # manual check of one cell: z-scoring makes scale/shift irrelevant
    day = pd.Timestamp("2020-01-02")
    za = (a.loc[day, "score"] - a.loc[day, "score"].mean()) / a.loc[day, "score"].std(ddof=1)
    zb = (b.loc[day, "score"] - b.loc[day, "score"].mean()) / b.loc[day, "score"].std(ddof=1)
    zc = (c.loc[day, "score"] - c.loc[day, "score"].mean()) / c.loc[day, "score"].std(ddof=1)
    assert out.loc[(day, "B")] == pytest.approx((za["B"] + zb["B"] + zc["B"]) / 3, rel=1e-12)
    # qlib's literal algorithm (groupby.apply) gives the same numbers
    lit = pd.concat([a, b, c], axis=1)
    lit = lit.groupby("datetime", group_keys=False).apply(lambda df: (df - df.mean()) / df.std()).mean(axis=1)
    pd.testing.assert_series_equal(out, lit.sort_index(), check_names=False, rtol=1e-12, atol=1e-12)


def test_average_ensemble_nested_dict_and_single_row_day() -> None:
    a, b = frame(["2020-01-02"], 1), frame(["2020-01-02"], 2)
    lone = frame(["2020-01-03"], 3, insts=["A"])  # one row on a day: std is NaN -> NaN, as in qlib
    out = AverageEnsemble()({"m1": {"r1": a, "r2": lone}, "m2": b})
    assert np.isnan(out.loc[(pd.Timestamp("2020-01-03"), "A")])
    pd.testing.assert_series_equal(out.loc["2020-01-02"], reference_average([a, b]).loc["2020-01-02"],
                                   check_names=False, rtol=1e-12)


def test_flatten_tuple_keys_matches_qlib() -> None:
    assert flatten_tuple_keys({"a": {"x": 1, "y": {"z": 2}}, "b": 3}) == {("a", "x"): 1, (("a", "y"), "z"): 2,
                                                                          "b": 3}


def test_single_key_ensemble() -> None:
    ske = SingleKeyEnsemble()
    assert ske({"only": {"inner": 5}}) == 5
    assert ske({"a": {"x": 1}, "b": 2}) == {"a": 1, "b": 2}
    assert ske({"a": {"x": 1}}, recursion=False) == {"x": 1}
    assert ske(7) == 7 and ske({}) == {}


def test_group_custom_funcs_and_errors() -> None:
    def by_first(d: dict) -> dict:
        out: dict = {}
        for (g, m), v in d.items():
            out.setdefault(g, {})[m] = v
        return out

    g = Group(group_func=by_first, ens=lambda members: sum(members.values()))
    assert g({("x", 1): 1, ("x", 2): 2, ("y", 1): 10}) == {"x": 3, "y": 10}
    with pytest.raises(NotImplementedError):
        Group()({"a": 1})
    with pytest.raises(NotImplementedError):
        Group(group_func=by_first)({("x", 1): 1})


@pytest.mark.skipif(importlib.util.find_spec("joblib") is None, reason="joblib not installed")
def test_group_parallel_same_result() -> None:
    data = {("LGB", f"r{i}"): frame([f"2020-01-{i + 2:02d}"], i) for i in range(4)}
    data.update({("MLP", f"r{i}"): frame([f"2020-01-{i + 2:02d}"], 10 + i) for i in range(4)})
    seq = RollingGroup()(data)
    par = RollingGroup()(data, n_jobs=2)
    assert list(par) == list(seq)
    for k in seq:
        pd.testing.assert_frame_equal(par[k], seq[k])


def test_group_without_joblib_runs_sequentially(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ens, "_joblib_available", lambda: False)
    data = {("LGB", "r1"): frame(["2020-01-02"], 1), ("MLP", "r1"): frame(["2020-01-02"], 2)}
    out = RollingGroup()(data, n_jobs=4)
    pd.testing.assert_frame_equal(out[("MLP",)], data[("MLP", "r1")])


_ORACLE_SCRIPT = textwrap.dedent("""
    import pickle, sys
    from qlib.model.ens.ensemble import AverageEnsemble, RollingEnsemble, SingleKeyEnsemble
    from qlib.model.ens.group import RollingGroup
    inp = pickle.load(open(sys.argv[1], "rb"))
    out = {"rolling_group": RollingGroup()(inp["rolling"]), "average": AverageEnsemble()(inp["average"]),
           "single": SingleKeyEnsemble()(inp["single"])}
    pickle.dump(out, open(sys.argv[2], "wb"))
""")


@pytest.mark.qlib
@pytest.mark.skipif(not _ORACLE or not Path(_ORACLE).exists(), reason="set QLIB_ORACLE_PYTHON to the real qlib venv")
def test_same_results_as_real_qlib(tmp_path: Path) -> None:
    """Opt-in: ``QLIB_ORACLE_PYTHON=/work/qlib-venv/bin/python pytest -m qlib tests/task/test_ens.py``."""
    d = [f"2020-01-{i:02d}" for i in range(2, 10)]
    rolling = {("LGB", "r2"): frame(d[3:6], 2), ("LGB", "r1"): frame(d[:4], 1), ("LGB", "r3"): frame(d[5:], 3),
               ("MLP", "r1"): frame(d[:5], 4), ("MLP", "r2"): frame(d[4:], 5)}
    c = frame(d, 8)
    c.iloc[[1, 5, 6], 0] = np.nan
    average = {"m1": {"r1": frame(d, 6), "r2": frame(d, 7) * 3 - 1}, "m2": c.iloc[:-3],
               "m3": frame(d[:1], 9, insts=["A"])}
    single = {"x": {"only": {"deep": 1}}, "y": {"a": 1, "b": {"c": 2}}}
    (tmp_path / "in.pkl").write_bytes(pickle.dumps({"rolling": rolling, "average": average, "single": single}))
    env = {**os.environ, "MLFLOW_ALLOW_FILE_STORE": "true", "MLFLOW_DISABLE_TELEMETRY": "true"}
    r = subprocess.run([_ORACLE, "-c", _ORACLE_SCRIPT, str(tmp_path / "in.pkl"), str(tmp_path / "out.pkl")],
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    qlib_out = pickle.loads((tmp_path / "out.pkl").read_bytes())
    ours = RollingGroup()(rolling)
    assert list(ours) == list(qlib_out["rolling_group"])
    for k in ours:
        pd.testing.assert_frame_equal(ours[k], qlib_out["rolling_group"][k], check_exact=True)
    pd.testing.assert_series_equal(AverageEnsemble()(average), qlib_out["average"], check_names=False,
                                   rtol=1e-13, atol=1e-13)
    assert SingleKeyEnsemble()(single) == qlib_out["single"]
