"""LGBModel: training, prediction, errors, metric logging and pickling."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from qlib_prefect.data.dataset import DatasetH
from qlib_prefect.data.handler import DataHandlerLP
from qlib_prefect.data.loader import StaticDataLoader
from qlib_prefect.errors import ConfigError, DataError
from qlib_prefect.model.gbdt import LGBModel, log_eval_history

FEATS = ["KMID", "KLEN", "ROC5", "MA10", "STD20"]


def make_dataset(frame: pd.DataFrame, segments: dict[str, tuple[str, str]]) -> DatasetH:
    """A real DatasetH: learn view = DropnaLabel + CSZScoreNorm(label), infer view = raw."""
    handler = DataHandlerLP(
        data_loader=StaticDataLoader(frame),
        learn_processors=["DropnaLabel", {"class": "CSZScoreNorm", "kwargs": {"fields_group": "label"}}],
        cache=False,
    )
    return DatasetH(handler=handler, segments=segments)


def make_frame(seed: int = 0, n_days: int = 60, n_inst: int = 25, n_labels: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    idx = pd.MultiIndex.from_product(
        [pd.bdate_range("2020-01-01", periods=n_days), [f"I{i:02d}" for i in range(n_inst)]],
        names=["datetime", "instrument"],
    )
    x = rng.standard_normal((len(idx), len(FEATS))).astype(np.float32)
    y = 0.01 * (x[:, 0] * 0.8 - x[:, 2] * 0.5 + 0.3 * rng.standard_normal(len(idx)))
    y[::13] = np.nan
    names = [("feature", f) for f in FEATS] + [("label", f"LABEL{i}") for i in range(n_labels)]
    cols = pd.MultiIndex.from_tuples(names)
    data = np.column_stack([x] + [y] * n_labels)
    return pd.DataFrame(data, index=idx, columns=cols)


SEGMENTS = {"train": ("2020-01-01", "2020-02-14"), "valid": ("2020-02-17", "2020-03-06"),
            "test": ("2020-03-09", "2020-03-31")}


@pytest.fixture(scope="module")
def fitted() -> tuple[LGBModel, DatasetH]:
    ds = make_dataset(make_frame(), SEGMENTS)
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
    pred = model.predict(ds)
    x_test = ds.prepare("test", col_set="feature", data_key="infer")
    raw_label = ds.prepare("test", col_set="label", data_key="raw").iloc[:, 0]
    assert isinstance(pred, pd.Series) and pred.name is None
    pd.testing.assert_index_equal(pred.index, x_test.index)  # infer view: NaN-label rows are predicted too
    assert raw_label.isna().any() and len(pred) == len(raw_label)
    assert pred.dtype == np.float64
    # trained on the learn view (labels z-scored per day), not on the raw labels (~1e-2)
    assert pred.std() > 0.3
    ok = raw_label.notna()
    assert np.corrcoef(pred[ok], raw_label[ok])[0, 1] > 0.6
    # identical to calling the booster directly on the feature matrix (column order untouched)
    np.testing.assert_array_equal(pred.to_numpy(), model.model.predict(x_test.to_numpy()))
    assert model.feature_names_ == FEATS
    assert model.model.best_iteration >= 1
    assert set(model.evals_result_) == {"train", "valid"}
    assert sorted(model.get_feature_importance().index) == sorted(FEATS)


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
    ds = make_dataset(make_frame(), {**SEGMENTS, "valid": ("2021-01-01", "2021-02-01")})
    with pytest.raises(DataError, match="'valid'"):
        LGBModel().fit(ds)
    ds = make_dataset(make_frame(n_labels=2), SEGMENTS)
    with pytest.raises(DataError, match="one label column"):
        LGBModel().fit(ds)
    with pytest.raises(ValueError, match="not fitted"):
        LGBModel().predict(ds)


def test_early_stopping_and_finetune() -> None:
    ds = make_dataset(make_frame(seed=1), SEGMENTS)
    model = LGBModel(learning_rate=0.5, num_leaves=31, min_data_in_leaf=2, num_threads=1, early_stopping_rounds=5)
    model.fit(ds, num_boost_round=500)
    best = model.model.best_iteration
    assert best < 200  # stops long before 500 rounds on a tiny, noisy set
    assert len(model.evals_result_["valid"]["l2"]) == best + 5
    n_before = model.model.num_trees()
    model.finetune(ds, num_boost_round=4)
    assert model.model.num_trees() == n_before + 4


@pytest.fixture
def active_run(tmp_path):
    """R on a fresh SQLite store with an active run; R/C are reset afterwards."""
    import qlib_prefect
    from qlib_prefect.config.runtime import C
    from qlib_prefect.workflow import R

    qlib_prefect.init(exp_manager={"class": "MLflowExpManager", "module_path": "qlib.workflow.expm",
                                   "kwargs": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}"}})
    try:
        with R.start(experiment_name="gbdt"):
            yield R.get_recorder()
    finally:
        R.reset()
        C.reset()


def test_eval_history_logged_to_the_active_run(active_run) -> None:
    ds = make_dataset(make_frame(seed=2), SEGMENTS)
    model = LGBModel(learning_rate=0.3, num_leaves=7, num_threads=1, early_stopping_rounds=5)
    model.fit(ds, num_boost_round=60)  # no recorder passed: goes to the active R run
    active_run.flush()
    for name, set_name in (("l2.train", "train"), ("l2.valid", "valid")):
        hist = active_run.get_metric_history(name)
        assert [m.step for m in hist] == list(range(len(model.evals_result_[set_name]["l2"])))
        assert [m.value for m in hist] == pytest.approx(model.evals_result_[set_name]["l2"], rel=1e-12)
    # params.pkl through the recorder (what the trainer saves) predicts identically after loading
    active_run.save_objects(**{"params.pkl": model})
    loaded = active_run.load_object("params.pkl")
    assert isinstance(loaded, LGBModel) and loaded.params == model.params
    pd.testing.assert_series_equal(loaded.predict(ds), model.predict(ds), check_exact=True)
    # a full 1000-round history (2 metrics) is logged through the recorder's batched queue
    n = log_eval_history(active_run, {"train": {"l2": list(np.linspace(1, 0, 1000))}, "valid": {"l2": [0.5] * 1000}})
    active_run.flush()
    assert n == 2000
    assert len(active_run.get_metric_history("l2.valid")) == len(model.evals_result_["valid"]["l2"]) + 1000


def test_eval_history_logged_to_a_run_of_r_built_on_first_use(tmp_path) -> None:
    """No ``init()``: R is built by ``R.start`` from ``C`` and installs itself as the models' metrics source."""
    from qlib_prefect.config import runtime
    from qlib_prefect.model.base import active_metrics_logger
    from qlib_prefect.workflow import R

    R.reset()
    runtime.configure(exp_manager={"class": "MLflowExpManager",
                                   "kwargs": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}"}})  # C only, R untouched
    assert not R.is_built() and active_metrics_logger() is None
    try:
        with R.start(experiment_name="lazy"):
            rec = R.get_recorder()
            assert active_metrics_logger().id == rec.id
            model = LGBModel(num_leaves=7, num_threads=1, early_stopping_rounds=5)
            model.fit(make_dataset(make_frame(seed=3), SEGMENTS), num_boost_round=30)
        assert active_metrics_logger() is None  # the run ended
        hist = rec.get_metric_history("l2.valid")
        assert [m.value for m in hist] == pytest.approx(model.evals_result_["valid"]["l2"], rel=1e-12)
    finally:
        R.reset()
        runtime.reset()


def test_fit_without_active_run_logs_nothing_and_builds_no_store() -> None:
    from qlib_prefect.workflow import R

    R.reset()
    ds = make_dataset(make_frame(seed=2), SEGMENTS)
    LGBModel(num_leaves=7, num_threads=1).fit(ds, num_boost_round=5)
    assert not R.is_built()


def test_predictions_identical_to_real_qlib_lgbmodel() -> None:
    """tools/make_signal_goldens.py trained qlib 0.9.7's LGBModel on this frame: same trees, same predictions."""
    import json
    from pathlib import Path

    gold = Path(__file__).resolve().parents[1] / "golden" / "signal"
    meta = json.loads((gold / "expected.json").read_text())["lgb_model"]
    frame = pd.read_parquet(gold / "model_inputs.parquet")
    ds = DatasetH(handler=DataHandlerLP(data_loader=StaticDataLoader(frame), cache=False),
                  segments={k: tuple(v) for k, v in meta["segments"].items()})
    model = LGBModel(**meta["params"])
    model.fit(ds)
    assert model.model.best_iteration == meta["best_iteration"]
    assert model.evals_result_ == meta["evals"]
    expected = pd.read_parquet(gold / "model_pred.parquet")["score"].rename(None)
    pd.testing.assert_series_equal(model.predict(ds), expected, check_exact=True)


def test_train_matrix_goes_to_lightgbm_without_a_copy_and_layout_does_not_change_the_model(monkeypatch) -> None:
    """Issue 13: the handler cache's column-ordered (memory-mapped) block is LightGBM's training matrix as is; a
    C-ordered and an F-ordered copy of the same features give bit-identical predictions."""
    import lightgbm as lgb

    from qlib_prefect.model import gbdt

    f = np.asfortranarray(np.arange(12.0, dtype=np.float32).reshape(4, 3))
    assert gbdt._lgb_matrix(f) is f and gbdt._lgb_matrix(np.ascontiguousarray(f)).flags.c_contiguous
    strided = np.arange(24.0).reshape(4, 6)[:, ::2]
    assert np.array_equal(gbdt._lgb_matrix(strided), strided) and gbdt._lgb_matrix(strided).flags.c_contiguous

    seen: list[np.ndarray] = []
    real = lgb.Dataset.__init__

    def spy(self, data, *a, **k):
        seen.append(data)
        real(self, data, *a, **k)

    monkeypatch.setattr(lgb.Dataset, "__init__", spy)
    preds = []
    for order in ("C", "F"):
        frame = make_frame(seed=3)
        frame = pd.DataFrame(np.array(frame.to_numpy(), order=order), index=frame.index, columns=frame.columns)
        ds = make_dataset(frame, {"train": ("2020-01-01", "2020-02-14"), "valid": ("2020-02-17", "2020-03-06")})
        model = LGBModel(num_boost_round=15, num_leaves=7, verbose=-1, num_threads=1)
        model.fit(ds)
        preds.append(model.predict(ds, segment="valid"))
    assert seen and all(d.flags.c_contiguous or d.flags.f_contiguous for d in seen)
    pd.testing.assert_series_equal(preds[0], preds[1], check_exact=True)
