"""PNG plots saved next to a record's artifacts (matplotlib, Agg backend; imported only when a stage runs).

* ``portfolio_analysis/cumulative_return.png``: cumulative return of the strategy with and without cost vs the
  benchmark (named by its code, e.g. SPX), and the excess returns (sums of daily returns, qlib's ``report_graph``
  convention, said on the axis);
* ``portfolio_analysis/drawdown.png``: drawdown of the cumulative excess return with and without cost (two lines,
  no overlapping fills);
* ``sig_analysis/ic.png``: daily IC with the 20-day moving averages of IC and Rank IC (full windows only).

The interactive report (``report.html``, :mod:`qlib_prefect.report`) shows these and more.
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["plot_stage", "plot_stage_safely", "prewarm_plotting"]


_LOCK = threading.Lock()


_WARM: dict[str, threading.Thread] = {}


def _warm() -> None:
    with _LOCK:  # plot_stage waits for this: importing matplotlib and building its font cache is shared state
        try:
            from matplotlib.backends.backend_agg import FigureCanvasAgg

            fig, ax = _figure((1, 1))
            ax.set_title("warm-up")
            FigureCanvasAgg(fig).draw()  # loads the fonts and the text layout
        except Exception:  # plot_stage reports its own errors
            pass


def prewarm_plotting() -> None:
    """Import matplotlib and load its fonts in a background thread (once per process), so a record stage's
    plots do not pay ~1 s of imports after its backtest: the import overlaps the stage's computation."""
    with _WARM_LOCK:
        if "thread" not in _WARM:
            _WARM["thread"] = threading.Thread(target=_warm, name="qlib-prefect-plot-warmup", daemon=True)
            _WARM["thread"].start()


_WARM_LOCK = threading.Lock()


def _figure(size: tuple[float, float]) -> tuple[Any, Any]:
    """A figure + axes without pyplot (no global state; record stages may plot from several threads)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    return fig, fig.subplots()


def plot_stage(rec: Any, benchmark: str | None = None) -> list[str]:
    """Write the plots that ``rec``'s own artifacts allow; returns their artifact paths. ``benchmark``: the
    benchmark's code for the legend (default ``"benchmark"``)."""
    root = rec.artifact_dir
    written: list[str] = []
    pa = root / "portfolio_analysis"
    reports = sorted(pa.glob("report_normal_*.pkl")) if pa.is_dir() else []
    ic = root / "sig_analysis" / "ic.pkl"
    warm = _WARM.get("thread")
    if warm is not None:
        warm.join()
    with _LOCK:  # font cache and text layout are shared state inside matplotlib
        if reports:
            written += _portfolio_plots(rec, reports[0], benchmark or "benchmark")
        if ic.is_file():
            written += _ic_plot(rec)
    return written


def _pct_axis(ax: Any) -> None:
    from matplotlib.ticker import PercentFormatter

    ax.yaxis.set_major_formatter(PercentFormatter(1.0))


def _portfolio_plots(rec: Any, report_path: Any, benchmark: str) -> list[str]:
    import pandas as pd

    report = pd.read_pickle(report_path)
    if report is None or len(report) == 0 or not {"return", "bench", "cost"} <= set(report.columns):
        return []
    out_dir = rec.artifact_dir / "portfolio_analysis"
    r, b, c = report["return"].astype(float), report["bench"].astype(float), report["cost"].astype(float)
    fig, ax = _figure((10, 5))
    ax.plot(r.index, r.cumsum(), label="strategy (without cost)")
    ax.plot(r.index, (r - c).cumsum(), label="strategy (with cost)")
    ax.plot(b.index, b.cumsum(), label=f"{benchmark} (benchmark)", color="black", linewidth=1)
    ax.plot(r.index, (r - b).cumsum(), label="excess (without cost)", linestyle="--")
    ax.plot(r.index, (r - b - c).cumsum(), label="excess (with cost)", linestyle="--")
    ax.set_title(f"Cumulative return vs {benchmark}")
    ax.set_xlabel("trading day")
    ax.set_ylabel("cumulative return (sum of daily returns, %)")
    _pct_axis(ax)
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(out_dir / "cumulative_return.png", dpi=100)

    fig, ax = _figure((10, 3.5))
    for label, s in (("excess return (without cost)", r - b), ("excess return (with cost)", r - b - c)):
        cum = s.cumsum()
        ax.plot(cum.index, cum - cum.cummax(), label=label, linewidth=1.2)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_title(f"Drawdown of the cumulative excess return over {benchmark}")
    ax.set_xlabel("trading day")
    ax.set_ylabel("drawdown (%, from the running maximum)")
    _pct_axis(ax)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(out_dir / "drawdown.png", dpi=100)
    return ["portfolio_analysis/cumulative_return.png", "portfolio_analysis/drawdown.png"]


def _ic_plot(rec: Any) -> list[str]:
    import pandas as pd

    ic = pd.read_pickle(rec.artifact_dir / "sig_analysis" / "ic.pkl")
    ric_path = rec.artifact_dir / "sig_analysis" / "ric.pkl"
    ric = pd.read_pickle(ric_path) if ric_path.is_file() else None
    fig, ax = _figure((10, 4))
    ax.bar(ic.index, ic.to_numpy(dtype=float), width=1.0, alpha=0.35, label=f"IC (mean {ic.mean():.4f})")
    ax.plot(ic.index, ic.rolling(20, min_periods=20).mean(), label="IC 20-day mean")
    if ric is not None:
        ax.plot(ric.index, ric.rolling(20, min_periods=20).mean(),
                label=f"Rank IC 20-day mean (mean {ric.mean():.4f})")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_title("Daily information coefficient (IC: Pearson, Rank IC: Spearman, score vs label)")
    ax.set_xlabel("trading day")
    ax.set_ylabel("IC (correlation)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(rec.artifact_dir / "sig_analysis" / "ic.png", dpi=100)
    return ["sig_analysis/ic.png"]


def plot_stage_safely(rec: Any, label: str, benchmark: str | None = None) -> list[str]:
    """:func:`plot_stage`, where a failure only warns (plots are a convenience: a stage never fails for them)."""
    import logging

    try:
        return plot_stage(rec, benchmark=benchmark)
    except Exception as e:
        logging.getLogger("qlib_prefect.orchestration").warning("%s: plots skipped (%s)", label, e)
        return []
