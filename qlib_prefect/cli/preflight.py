"""What a command does before anything slow: start its clock, fill the sample variable, validate the config.

A config typo or a missing file must fail with its message (naming the file and key, with a "did you mean")
before the temporary Prefect API server starts or Prefect, MLflow and LightGBM are imported.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any

__all__ = ["command_elapsed", "fill_sample_env", "route_progress_logs", "start_clock", "validate_config"]

_CLOCK = {"start": time.perf_counter()}  # set again by start_clock() when a command starts


def start_clock() -> None:
    """Mark the start of a command (``main()`` calls it first)."""
    _CLOCK["start"] = time.perf_counter()


def command_elapsed() -> float:
    """Wall seconds since the command started: what the user waited, start-up included."""
    return time.perf_counter() - _CLOCK["start"]


def _announce_build(dest: Path) -> None:
    print(f"materialising the bundled S&P 500 sample into {dest} (first time only) ...", flush=True)


def fill_sample_env(config: Any) -> Path | None:
    """``$QLIB_PREFECT_SAMPLE_DIR`` for a config that uses it (see :func:`~qlib_prefect.data.sample.ensure_sample_env`),
    saying so only when the sample is really being built."""
    from qlib_prefect.data.sample import ensure_sample_env

    return ensure_sample_env(config, on_build=_announce_build)


def validate_config(config: str | Path) -> None:
    """Load and validate ``config`` (raises the loader's ``ConfigError``), fill the sample variable, then check
    the config against its data (:func:`~qlib_prefect.workflow.config_check.check_workflow_config`).

    Validation renders an unset sample variable as a stand-in path, so a typo is reported before the sample is
    materialised. Warnings are not shown here: the run loads the config again and shows them once.
    """
    from qlib_prefect.config.loader import ConfigWarning, load_config
    from qlib_prefect.config.settings import get_settings
    from qlib_prefect.data.sample import SAMPLE_DIR_ENV

    env = None if get_settings().sample_dir else {**os.environ, SAMPLE_DIR_ENV: "<bundled sample>"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConfigWarning)
        cfg = load_config(config, env=env)
    if fill_sample_env(config) is not None:  # the config uses the sample: load it again with its real path
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConfigWarning)
            cfg = load_config(config)
    from qlib_prefect.workflow.config_check import check_workflow_config

    check_workflow_config(cfg)  # dates in the calendar, market, benchmark, fields, operators (reads no data)


def route_progress_logs() -> None:
    """Send the training-progress lines (:data:`~qlib_prefect.model.gbdt.PROGRESS_LOGGER`) into the Prefect task
    logs only: the terminal already shows them (a progress bar, or the same lines on stderr).

    Uses Prefect's public ``PREFECT_LOGGING_EXTRA_LOGGERS`` (read when Prefect is imported, so call this first).
    """
    from qlib_prefect.model.gbdt import PROGRESS_LOGGER

    log = logging.getLogger(PROGRESS_LOGGER)
    if log.level == logging.NOTSET:
        log.setLevel(logging.INFO)
    log.propagate = False
    from qlib_prefect.config.settings import get_settings

    extra = [n.strip() for n in (get_settings().prefect_extra_loggers or "").split(",") if n.strip()]
    if PROGRESS_LOGGER not in extra:
        os.environ["PREFECT_LOGGING_EXTRA_LOGGERS"] = ",".join([*extra, PROGRESS_LOGGER])
