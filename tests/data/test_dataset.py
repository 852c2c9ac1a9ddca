"""DatasetH: inclusive segments, prepare forms, fetch_kwargs, qlib class paths, the dump CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from qlib_prefect.data.dataset import DatasetH
from qlib_prefect.data.handler import DataHandlerLP
from qlib_prefect.errors import ConfigError
from qlib_prefect.utils import init_instance_by_config


def frame() -> pd.DataFrame:
    dates = pd.bdate_range("2021-01-04", periods=15)  # Mon 4 Jan .. Fri 22 Jan 2021
    idx = pd.MultiIndex.from_product([dates, ["A", "B", "C"]], names=["datetime", "instrument"])
    v = np.arange(len(idx) * 2, dtype="float32").reshape(-1, 2)
    v[::4, 1] = np.nan
    cols = pd.MultiIndex.from_tuples([("feature", "f"), ("label", "y")])
    return pd.DataFrame(v, index=idx, columns=cols)


SEGMENTS = {"train": ("2021-01-02", "2021-01-10"), "valid": ("2021-01-11", "2021-01-16"), "test": ("2021-01-17", None)}


def dataset(**kw) -> DatasetH:
    h = DataHandlerLP(data_loader={"class": "StaticDataLoader", "kwargs": {"config": frame()}},
                      learn_processors=["DropnaLabel"])
    return DatasetH(handler=h, segments=SEGMENTS, **kw)


def test_segments_are_inclusive_and_need_not_be_trading_days() -> None:
    ds = dataset()
    train, valid, test = ds.prepare(["train", "valid", "test"])
    dates = lambda d: sorted(set(d.index.get_level_values(0)))  # noqa: E731
    assert dates(train) == list(pd.bdate_range("2021-01-04", "2021-01-08"))
    assert dates(valid) == list(pd.bdate_range("2021-01-11", "2021-01-15"))
    assert dates(test) == list(pd.bdate_range("2021-01-18", "2021-01-22"))
    assert len(train) + len(valid) + len(test) == len(frame())
    assert list(train.columns) == ["f", "y"]


def test_prepare_col_set_data_key_and_selectors() -> None:
    ds = dataset()
    learn = ds.prepare("train", col_set=["feature", "label"], data_key="learn")
    assert learn.columns.nlevels == 2 and learn[("label", "y")].notna().all()
    assert len(learn) < len(ds.prepare("train"))
    feat = ds.prepare("valid", col_set="feature")
    assert list(feat.columns) == ["f"]
    by_slice = ds.prepare(slice("2021-01-05", "2021-01-05"))
    assert len(by_slice) == 3
    assert len(ds.prepare(("2021-01-05", "2021-01-06"))) == 6
    with pytest.raises(ConfigError, match="unknown segment"):
        ds.prepare("training")


def test_fetch_kwargs_and_config() -> None:
    ds = dataset(fetch_kwargs={"col_set": "label"})
    with pytest.raises(TypeError):
        ds.prepare("train", col_set="feature")  # duplicated keyword, as in qlib
    ds2 = DatasetH(handler=dataset().handler, segments=SEGMENTS, fetch_kwargs={"squeeze": True})
    assert isinstance(ds2.prepare("train", col_set="label"), pd.Series)
    ds.config(segments={"train": ("2021-01-04", "2021-01-04")})
    assert ds.segments == {"train": ("2021-01-04", "2021-01-04")}
    assert DatasetH.get_min_time(SEGMENTS) == "2021-01-02"
    assert DatasetH.get_max_time(SEGMENTS) is None
    with pytest.raises(ConfigError, match="segments"):
        DatasetH(handler=dataset().handler, segments={"train": ("2021-01-01",)})
    with pytest.raises(ConfigError, match="not a date"):
        DatasetH(handler=dataset().handler, segments={"train": ("yesterday", "2021-01-04")})


def test_dataset_from_qlib_config(tmp_path) -> None:
    path = tmp_path / "frame.parquet"
    frame().to_parquet(path)
    cfg = {
        "class": "DatasetH",
        "module_path": "qlib.data.dataset",
        "kwargs": {
            "handler": {
                "class": "DataHandlerLP",
                "module_path": "qlib.data.dataset.handler",
                "kwargs": {
                    "data_loader": {"class": "StaticDataLoader", "module_path": "qlib.data.dataset.loader",
                                    "kwargs": {"config": str(path)}},
                    "learn_processors": [{"class": "DropnaLabel", "module_path": "qlib.data.dataset.processor"}],
                },
            },
            "segments": SEGMENTS,
        },
    }
    ds = init_instance_by_config(cfg)
    assert isinstance(ds, DatasetH) and isinstance(ds.handler, DataHandlerLP)
    pd.testing.assert_frame_equal(pd.concat(ds.prepare(list(SEGMENTS), col_set="__raw")), frame())


def test_dump_cli(tmp_path, capsys) -> None:
    from qlib_prefect.cli.main import main

    path = tmp_path / "frame.parquet"
    frame().to_parquet(path)
    cfg = {"dataset": {"class": "DatasetH", "kwargs": {
        "handler": {"class": "DataHandlerLP", "kwargs": {
            "data_loader": {"class": "StaticDataLoader", "kwargs": {"config": str(path)}},
            "learn_processors": ["DropnaLabel"]}},
        "segments": SEGMENTS}}}
    cfg_path = tmp_path / "ds.json"
    cfg_path.write_text(json.dumps(cfg))
    out = tmp_path / "out.parquet"
    assert main(["dataset", "dump", str(cfg_path), str(out), "--data-key", "learn", "--segments", "train", "test",
                 "--json", "-"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    df = pd.read_parquet(out)
    assert list(df.columns) == ["feature/f", "label/y"]
    assert summary["rows"] == len(df) and df["label/y"].notna().all()
    assert set(df.index.get_level_values(0)) <= set(pd.bdate_range("2021-01-04", "2021-01-08")) | set(
        pd.bdate_range("2021-01-18", "2021-01-22"))
    assert main(["dataset", "dump", str(cfg_path), str(out), "--segments", "nope"]) == 2
    assert main(["dataset", "dump", str(tmp_path / "missing.yaml"), str(out)]) == 2


def test_pickling_follows_qlib_serializable_rules(tmp_path) -> None:
    import pickle

    ds = dataset()
    ds.config(dump_all=False, recursive=True)  # what qlib's trainer does before R.save_objects(dataset=...)
    light = pickle.loads(pickle.dumps(ds))
    assert light.segments == ds.segments and not hasattr(light.handler, "_data")
    ds.config(dump_all=True, recursive=True)
    full = pickle.loads(pickle.dumps(ds))
    pd.testing.assert_frame_equal(full.prepare("train"), ds.prepare("train"))
    path = tmp_path / "h.pkl"
    ds.handler.to_pickle(path, dump_all=True)
    again = DataHandlerLP.load(path)
    pd.testing.assert_frame_equal(again.fetch(data_key="learn"), ds.handler.fetch(data_key="learn"))
    with pytest.raises(ConfigError, match="unknown parameter"):
        ds.config(bogus=1)


def test_ts_dataset_windows() -> None:
    from qlib_prefect.data.dataset import TSDatasetH

    df = frame().drop(index=[(pd.Timestamp("2021-01-12"), "B")])
    h = DataHandlerLP(data_loader={"class": "StaticDataLoader", "kwargs": {"config": df}})
    ts = TSDatasetH(handler=h, segments=SEGMENTS, step_len=3)
    valid = ts.prepare("valid")
    assert len(valid) == 14  # 5 dates x 3 stocks, one row missing
    assert list(valid.get_index())[:2] == [(pd.Timestamp("2021-01-11"), "A"), (pd.Timestamp("2021-01-12"), "A")]
    # window ending 2021-01-13 for B: 11th (row), 12th (missing -> NaN), 13th; history before the segment is used
    win = valid["2021-01-13", "B"]
    expected = df.xs("B", level="instrument").loc[["2021-01-11", "2021-01-13"]].to_numpy()
    assert win.shape == (3, 2)
    np.testing.assert_array_equal(win[[0, 2]], expected)
    assert np.isnan(win[1]).all()
    first = valid[0]  # A on 2021-01-11: the two previous trading days come from the train period
    np.testing.assert_array_equal(first, df.xs("A", level="instrument").loc["2021-01-07":"2021-01-11"].to_numpy())
    assert valid[[0, 1]].shape == (2, 3, 2)
    with pytest.raises(KeyError):
        valid[100]
