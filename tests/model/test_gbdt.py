"""LGBModel: training, prediction, errors, metric logging and pickling."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from qlib_prefect.errors import ConfigError, DataError
from qlib_prefect.model.gbdt import LGBModel, log_eval_history

FEATS = ["KMID", "KLEN", "ROC5", "MA10", "STD20"]


class PanelDataset:
    """A minimal DatasetH stand-in: fixed frames with ("feature", "label") columns per segment."""

    def __init__(self, frame: pd.DataFrame, segments: dict[str, tuple[str, str]]) -> None:
        self.frame = frame
        self.segments = segments
        self.calls: list[tuple] = []

    def prepare(self, segments, col_set="__all", data_key="infer"):
        self.calls.append((segments, col_set, data_key))
        lo, hi = self.segments[segments]
        dt = self.frame.index.get_level_values("datetime")
        df = self.frame[(dt >= pd.Timestamp(lo)) & (dt <= pd.Timestamp(hi))]
        return df if col_set == "__all" or (isinstance(col_set, list) and len(col_set) == 2) else df[col_set]


def make_frame(seed: int = 0, n_days: int = 60, n_inst: int = 25, n_labels: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    idx = pd.MultiIndex.from_product(
        [pd.bdate_range("2020-01-01", periods=n_days), [f"I{i:02d}" for i in range(n_inst)]],
        names=["datetime", "instrument"],
    )
    x = rng.standard_normal((len(idx), len(FEATS))).astype(np.float32)
    y = x[:, 0] * 0.8 - x[:, 2] * 0.5 + 0.3 * rng.standard_normal(len(idx))
    names = [("feature", f) for f in FEATS] + [("label", f"LABEL{i}") for i in range(n_labels)]
    cols = pd.MultiIndex.from_tuples(names)
    data = np.column_stack([x] + [y] * n_labels)
    return pd.DataFrame(data, index=idx, columns=cols)


SEGMENTS = {"train": ("2020-01-01", "2020-02-14"), "valid": ("2020-02-17", "2020-03-06"),
            "test": ("2020-03-09", "2020-03-31")}


@pytest.fixture(scope="module")
def fitted() -> tuple[LGBModel, PanelDataset]:
    ds = PanelDataset(make_frame(), SEGMENTS)
    model = LGBModel(loss="mse", learning_rate=0.1, num_leaves=7, num_threads=1, seed=3)
    model.fit(ds, num_boost_round=200)
    return model, ds


def test_params_and_loss_validation() -> None:
    m = LGBModel(loss="binary", num_leaves=31, lambda_l1=1.5)
    assert m.params == {"objective": "binary", "verbosity": -1, "num_leaves": 31, "lambda_l1": 1.5}
    assert (m.early_stopping_rounds, m.num_boost_round) == (50, 1000)
    with pytest.raises(ConfigError, match="loss"):
        LGBModel(loss="huber")


def test_fit_uses_learn_view_and_predict_infer_view(fitted) -> None:
    model, ds = fitted
    assert ("train", ["feature", "label"], "learn") in ds.calls
    assert ("valid", ["feature", "label"], "learn") in ds.calls
    pred = model.predict(ds)
    assert ds.calls[-1] == ("test", "feature", "infer")
    x_test = ds.prepare("test", col_set="feature")
    assert isinstance(pred, pd.Series) and pred.name is None
    pd.testing.assert_index_equal(pred.index, x_test.index)
    assert pred.dtype == np.float64
    ic = np.corrcoef(pred, ds.prepare("test", col_set="label").iloc[:, 0])[0, 1]
    assert ic > 0.6
    # identical to calling the booster directly on the feature matrix (column order untouched)
    np.testing.assert_array_equal(pred.to_numpy(), model.model.predict(x_test.to_numpy()))
    assert model.model.best_iteration >= 1
    assert set(model.evals_result_) == {"train", "valid"}
    assert list(model.get_feature_importance().sort_index().index) == sorted(FEATS)


def test_pickle_round_trip_predicts_identically(fitted, tmp_path) -> None:
    model, ds = fitted
    model._scratch = "dropped"  # private attributes are not pickled (qlib's Serializable rule)
    blob = pickle.dumps(model)
    back = pickle.loads(blob)
    assert not hasattr(back, "_scratch")
    pd.testing.assert_series_equal(back.predict(ds), model.predict(ds))
    model.to_pickle(tmp_path / "params.pkl")
    again = LGBModel.load(tmp_path / "params.pkl")
    pd.testing.assert_series_equal(again.predict(ds), model.predict(ds))
    del model._scratch


def test_empty_segment_and_multi_label_are_clear_errors() -> None:
    ds = PanelDataset(make_frame(), {**SEGMENTS, "valid": ("2021-01-01", "2021-02-01")})
    with pytest.raises(DataError, match="'valid'"):
        LGBModel().fit(ds)
    ds = PanelDataset(make_frame(n_labels=2), SEGMENTS)
    with pytest.raises(DataError, match="one label column"):
        LGBModel().fit(ds)
    with pytest.raises(ValueError, match="not fitted"):
        LGBModel().predict(ds)


def test_early_stopping_and_finetune() -> None:
    ds = PanelDataset(make_frame(seed=1), SEGMENTS)
    model = LGBModel(learning_rate=0.5, num_leaves=31, min_data_in_leaf=2, num_threads=1, early_stopping_rounds=5)
    model.fit(ds, num_boost_round=500)
    best = model.model.best_iteration
    assert best < 200  # stops long before 500 rounds on a tiny, noisy set
    assert len(model.evals_result_["valid"]["l2"]) == best + 5
    n_before = model.model.num_trees()
    model.finetune(ds, num_boost_round=4)
    assert model.model.num_trees() == n_before + 4


class ListRecorder:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def log_metrics(self, step=None, **kw) -> None:
        self.calls.append((step, kw))


def test_eval_history_logged_per_iteration() -> None:
    rec = ListRecorder()
    n = log_eval_history(rec, {"train": {"l2": [3.0, 2.0, 1.0]}, "valid": {"l2": [4.0, 3.5, 3.6], "ndcg@5": [1, 2, 3]}})
    assert n == 9
    assert rec.calls[0] == (0, {"l2.train": 3.0, "l2.valid": 4.0, "ndcg_5.valid": 1.0})
    assert [c[0] for c in rec.calls] == [0, 1, 2]
