"""``TrainingProgress``: LightGBM training reports every iteration (lines off a terminal, logged for Prefect)."""

from __future__ import annotations

import io
import logging

import pytest
from test_gbdt import SEGMENTS, make_dataset, make_frame

from qlib_prefect.model.gbdt import PROGRESS_LOGGER, LGBModel, TrainingProgress


class _Env:
    def __init__(self, i: int) -> None:
        self.iteration = i
        self.evaluation_result_list = [("valid", "l2", 1.0 / (i + 1), False)]


def test_lines_off_a_terminal_first_iteration_then_periodic_then_final(caplog: pytest.LogCaptureFixture) -> None:
    out = io.StringIO()  # not a terminal: plain lines, no bar
    p = TrainingProgress(total=50, every_s=0.0, stream=out, label="LightGBM")
    with caplog.at_level(logging.INFO, logger=PROGRESS_LOGGER):
        for i in range(3):
            p(_Env(i))
        p.close(best_iteration=2)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("LightGBM: iteration 1/50, valid's l2 1,")
    assert lines[2].startswith("LightGBM: iteration 3/50, valid's l2 0.333333,")
    assert lines[-1].startswith("LightGBM: finished after 3/50 iterations, best iteration 2, valid's l2 0.333333")
    assert [r.getMessage() for r in caplog.records if r.name == PROGRESS_LOGGER] == lines


def test_periodic_lines_are_throttled() -> None:
    out = io.StringIO()
    p = TrainingProgress(total=100, every_s=3600.0, stream=out)
    for i in range(100):
        p(_Env(i))
    p.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "iteration 1/100" in lines[0] and "finished after 100/100" in lines[1]


def test_fit_reports_progress_until_early_stopping(capsys: pytest.CaptureFixture[str]) -> None:
    ds = make_dataset(make_frame(seed=1), SEGMENTS)
    model = LGBModel(learning_rate=0.5, num_leaves=31, min_data_in_leaf=2, num_threads=1, early_stopping_rounds=5)
    model.fit(ds, num_boost_round=500)
    err = capsys.readouterr().err.splitlines()
    best = model.model.best_iteration
    assert err[0].startswith("LightGBM: iteration 1/500, train's l2 ")
    assert err[-1].startswith(f"LightGBM: finished after {best + 5}/500 iterations, best iteration {best}, ")


def test_verbose_eval_zero_is_silent(capsys: pytest.CaptureFixture[str]) -> None:
    ds = make_dataset(make_frame(seed=1), SEGMENTS)
    LGBModel(num_leaves=7, num_threads=1).fit(ds, num_boost_round=5, verbose_eval=0)
    assert "LightGBM:" not in capsys.readouterr().err


def test_training_label_prefixes_evaluation_and_progress_lines(capsys: pytest.CaptureFixture[str]) -> None:
    """Concurrent rolling windows label their LightGBM lines; without a label the lines are qlib's."""
    from qlib_prefect.model.gbdt import training_label

    ds = make_dataset(make_frame(seed=1), SEGMENTS)
    with training_label("window-3"):
        LGBModel(num_leaves=7, num_threads=1).fit(ds, num_boost_round=4, verbose_eval=2)
    out = capsys.readouterr()
    evals = [ln for ln in out.out.splitlines() if "'s l2:" in ln]
    assert [ln.split("\t")[0] for ln in evals] == ["[window-3] [2]", "[window-3] [4]"]
    assert "train's l2:" in evals[0] and "valid's l2:" in evals[0]
    assert "LightGBM window-3: finished after" in out.err + out.out
    LGBModel(num_leaves=7, num_threads=1).fit(ds, num_boost_round=2, verbose_eval=2)
    plain = [ln for ln in capsys.readouterr().out.splitlines() if "'s l2:" in ln]
    assert plain and all(not ln.startswith("[window") for ln in plain)
