"""All exceptions raised on purpose by qlib-prefect.

Every message names the file, config key, expression or date at fault.
"""

from __future__ import annotations

__all__ = [
    "BacktestError",
    "ConfigError",
    "DataError",
    "DataFormatError",
    "DestinationNotEmptyError",
    "ExpAlreadyExistError",
    "ExpressionError",
    "LoadObjectError",
    "QlibPrefectError",
    "RecorderError",
    "StageError",
]


class QlibPrefectError(Exception):
    """Base class of every error raised on purpose by this package."""


class ConfigError(QlibPrefectError, ValueError):
    """A configuration (YAML, dict, kwargs) is invalid. The message names the key path."""


class DataError(QlibPrefectError, ValueError):
    """Input data is unusable (names the file / symbol / date / field)."""


class DataFormatError(DataError):
    """A qlib-format file (calendar, instruments, .bin) is corrupted or inconsistent."""


class DestinationNotEmptyError(DataError):
    """An import target holds files and neither appending nor overwriting was asked for.

    ``options`` names the two ways out as the caller spells them (the CLI says ``--append or --overwrite``).
    """

    def __init__(self, dest: object, *, options: str = "append=True or overwrite=True") -> None:
        self.dest = dest
        super().__init__(f"{dest}: destination exists and is not empty; use {options}")


class ExpressionError(QlibPrefectError, ValueError):
    """A qlib expression string is malformed or names an unknown field/operator."""


class RecorderError(QlibPrefectError, RuntimeError):
    """Experiment/recorder (MLflow) misuse or failure."""


class LoadObjectError(RecorderError):
    """An artifact could not be loaded from a recorder (qlib's LoadObjectError)."""


class ExpAlreadyExistError(RecorderError):
    """An experiment with that name already exists."""


class BacktestError(QlibPrefectError, ValueError):
    """Invalid backtest input (prediction, benchmark, strategy config)."""


class StageError(QlibPrefectError, RuntimeError):
    """A third-party error (LightGBM, MLflow, pandas...) raised inside a workflow stage, with the stage and config
    file named; the original exception is the ``__cause__``."""
