"""What a report reads from a recorder: qlib's artifact names only, so old runs (made before the report existed)
and runs of qlib itself report alike. Missing artifacts are ``None`` (the report says so in that section)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from qlib_prefect.errors import LoadObjectError

__all__ = ["RunArtifacts", "find_benchmark", "load_run_artifacts"]

logger = logging.getLogger(__name__)


@dataclass
class RunArtifacts:
    """The artifacts of one run that the report uses."""

    run_id: str
    run_name: str = ""
    experiment: str = ""
    pred: pd.Series | None = None
    label: pd.Series | None = None
    ic: pd.Series | None = None
    ric: pd.Series | None = None
    freq: str = "1day"
    report: pd.DataFrame | None = None
    positions: dict[Any, Any] | None = None
    indicator: Any = None
    port_analysis: pd.DataFrame | None = None
    indicator_analysis: pd.DataFrame | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    config: Any = None
    _holdings: pd.DataFrame | None = field(default=None, repr=False)

    def holdings(self) -> pd.DataFrame | None:
        """The positions as a long frame (built once; see :func:`qlib_prefect.report.analysis.holdings`)."""
        if self.positions is None:
            return None
        if self._holdings is None:
            from qlib_prefect.report.analysis import holdings

            self._holdings = holdings(self.positions)
        return self._holdings

    @property
    def benchmark(self) -> str:
        """The benchmark's code (e.g. ``SPX``) from the config, else ``"benchmark"``."""
        return find_benchmark(self.config) or "benchmark"


def find_benchmark(config: Any) -> str | None:
    """The first string ``benchmark`` value in a (nested) config (PortAnaRecord's ``backtest.benchmark``)."""
    if isinstance(config, dict):
        b = config.get("benchmark")
        if isinstance(b, str):
            return b
        if isinstance(b, (list, tuple)) and b and all(isinstance(x, str) for x in b):
            return "+".join(b)
        for v in config.values():
            found = find_benchmark(v)
            if found:
                return found
    elif isinstance(config, (list, tuple)):
        for v in config:
            found = find_benchmark(v)
            if found:
                return found
    return None


def _load(recorder: Any, name: str) -> Any:
    try:
        return recorder.load_object(name)
    except (LoadObjectError, FileNotFoundError, OSError):
        return None


def _first_col(obj: Any) -> pd.Series | None:
    if isinstance(obj, pd.DataFrame):
        return obj.iloc[:, 0] if obj.shape[1] else None
    return obj if isinstance(obj, pd.Series) else None


def load_run_artifacts(recorder: Any, *, config: Any = None) -> RunArtifacts:
    """Read a run's artifacts (``pred.pkl``, ``label.pkl``, ``sig_analysis/*``, ``portfolio_analysis/*``)."""
    art = RunArtifacts(run_id=str(getattr(recorder, "id", "")), run_name=str(getattr(recorder, "name", "") or ""))
    art.experiment = str(getattr(recorder, "experiment_id", "") or "")
    art.pred = _first_col(_load(recorder, "pred.pkl"))
    art.label = _first_col(_load(recorder, "label.pkl"))
    art.ic = _load(recorder, "sig_analysis/ic.pkl")
    art.ric = _load(recorder, "sig_analysis/ric.pkl")
    try:
        names = [p.rsplit("/", 1)[-1] for p in recorder.list_artifacts("portfolio_analysis")]
    except Exception:  # no such folder
        names = []
    reports = sorted(n for n in names if n.startswith("report_normal_") and n.endswith(".pkl"))
    if reports:
        art.freq = "1day" if "report_normal_1day.pkl" in reports else reports[0][len("report_normal_"):-4]
        f = art.freq
        art.report = _load(recorder, f"portfolio_analysis/report_normal_{f}.pkl")
        art.positions = _load(recorder, f"portfolio_analysis/positions_normal_{f}.pkl")
        art.indicator = _load(recorder, f"portfolio_analysis/indicators_normal_{f}_obj.pkl")
        art.port_analysis = _load(recorder, f"portfolio_analysis/port_analysis_{f}.pkl")
        art.indicator_analysis = _load(recorder, f"portfolio_analysis/indicator_analysis_{f}.pkl")
    try:
        art.metrics = {k: float(v) for k, v in recorder.list_metrics().items()}
    except Exception as e:  # a recorder without metrics support
        logger.debug("report: no metrics (%s)", e)
    art.config = config if config is not None else (_load(recorder, "config") or _load(recorder, "task"))
    return art
