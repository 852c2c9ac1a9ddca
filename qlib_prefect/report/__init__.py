"""The research report of a run (issue 14): an offline tear sheet, ledgers, run comparison, per-factor analysis.

Layer: above ``workflow`` (reads recorders through their qlib API), below ``task``/``orchestration`` (never
imports prefect). Heavy imports (plotly, mlflow) happen when a report is built.
"""

from qlib_prefect.report.artifacts import find_benchmark
from qlib_prefect.report.builder import REPORT_NAME, SECTION_IDS, build_run_report, run_report_html
from qlib_prefect.report.ledger import positions_ledger, trades_ledger
from qlib_prefect.report.tracking import report_link

__all__ = [
    "REPORT_NAME",
    "SECTION_IDS",
    "build_run_report",
    "find_benchmark",
    "positions_ledger",
    "report_link",
    "run_report_html",
    "trades_ledger",
]
