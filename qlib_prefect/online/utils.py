"""Online tags of recorders (qlib's ``qlib/workflow/online/utils.py``).

A recorder (MLflow run) is *online* when its tag ``online_status`` is ``"online"``; a missing tag counts as
``"offline"``. :class:`OnlineToolR` sets, resets and lists these tags in one experiment and extends the online
models' predictions (:class:`~qlib_prefect.online.update.PredUpdater`).
"""

from __future__ import annotations

import logging
from typing import Any

from qlib_prefect.errors import ConfigError, LoadObjectError
from qlib_prefect.task.utils import list_recorders

__all__ = ["OnlineTool", "OnlineToolR"]

logger = logging.getLogger(__name__)


class OnlineTool:
    """Set, reset and list online models (abstract: see :class:`OnlineToolR`)."""

    ONLINE_KEY = "online_status"
    ONLINE_TAG = "online"
    OFFLINE_TAG = "offline"

    def set_online_tag(self, tag: str, recorder: Any) -> None:
        raise NotImplementedError("Please implement the `set_online_tag` method.")

    def get_online_tag(self, recorder: Any) -> str:
        raise NotImplementedError("Please implement the `get_online_tag` method.")

    def reset_online_tag(self, recorder: Any) -> None:
        raise NotImplementedError("Please implement the `reset_online_tag` method.")

    def online_models(self) -> list:
        raise NotImplementedError("Please implement the `online_models` method.")

    def update_online_pred(self, to_date: Any = None) -> None:
        raise NotImplementedError("Please implement the `update_online_pred` method.")


def _as_list(recorder: Any) -> list:
    return list(recorder) if isinstance(recorder, (list, tuple, set)) else [recorder]


class OnlineToolR(OnlineTool):
    """Online tags on the recorders of one experiment (qlib's ``OnlineToolR``).

    Args:
        default_exp_name: the experiment used when a method is not given ``exp_name``.
    """

    def __init__(self, default_exp_name: str | None = None) -> None:
        self.default_exp_name = default_exp_name

    def _get_exp_name(self, exp_name: str | None) -> str:
        if exp_name is None:
            if self.default_exp_name is None:
                raise ConfigError("OnlineToolR: give exp_name or default_exp_name (both are None)")
            exp_name = self.default_exp_name
        return exp_name

    def set_online_tag(self, tag: str, recorder: Any) -> None:
        """Tag ``recorder`` (one or a list) ``online_status=tag``."""
        for rec in _as_list(recorder):
            rec.set_tags(**{self.ONLINE_KEY: tag})
        logger.info("Set %d models to '%s'.", len(_as_list(recorder)), tag)

    def get_online_tag(self, recorder: Any) -> str:
        """The recorder's ``online_status`` (``"offline"`` when missing)."""
        return recorder.list_tags().get(self.ONLINE_KEY, self.OFFLINE_TAG)

    def reset_online_tag(self, recorder: Any, exp_name: str | None = None) -> None:
        """Tag every recorder of the experiment ``offline``, then ``recorder`` (one or a list) ``online``."""
        exp_name = self._get_exp_name(exp_name)
        recs = _as_list(recorder)
        self.set_online_tag(self.OFFLINE_TAG, list(list_recorders(exp_name).values()))
        self.set_online_tag(self.ONLINE_TAG, recs)

    def online_models(self, exp_name: str | None = None) -> list:
        """The experiment's recorders tagged ``online``, in listing order (newest first)."""
        exp_name = self._get_exp_name(exp_name)
        return list(list_recorders(exp_name, lambda rec: self.get_online_tag(rec) == self.ONLINE_TAG).values())

    def update_online_pred(self, to_date: Any = None, from_date: Any = None, exp_name: str | None = None) -> None:
        """Extend every online model's ``pred.pkl`` to ``to_date`` (None: the last calendar date); a model
        without ``pred.pkl`` (e.g. a delayed trainer's, not fitted yet) is skipped with a warning, as in qlib."""
        from qlib_prefect.online.update import PredUpdater

        exp_name = self._get_exp_name(exp_name)
        online = self.online_models(exp_name=exp_name)
        memo: dict = {}  # the new dates' features once for the models whose re-pointed datasets are equal
        for rec in online:
            try:
                updater = PredUpdater(rec, to_date=to_date, from_date=from_date)
            except LoadObjectError as e:
                logger.warning("An exception `%s` happened when loading `pred.pkl`, skip it.", e)
                continue
            updater.update(memo=memo)
        logger.info("Finished updating %d online model predictions of %s.", len(online), exp_name)
