"""Online strategies (qlib's ``qlib/workflow/online/strategy.py``): which tasks to train and which models are online.

:class:`RollingStrategy` trains the rolling windows of :class:`~qlib_prefect.task.gen.RollingGen` into the
experiment ``name_id`` and keeps the latest window(s) online. Deliberate difference from qlib 0.9.7: the
RollingGen's calendar is re-read on every :meth:`RollingStrategy.prepare_tasks` (qlib keeps the calendar of the
moment the strategy was built, so in daily use rolling stops or crashes once new days arrive; docs/online.md, D2).
"""

from __future__ import annotations

import logging
from typing import Any

from qlib_prefect.errors import ConfigError
from qlib_prefect.online.utils import OnlineTool, OnlineToolR
from qlib_prefect.task.collect import RecorderCollector
from qlib_prefect.task.ens import RollingGroup
from qlib_prefect.task.gen import RollingGen, task_generator
from qlib_prefect.task.utils import TimeAdjuster, transform_end_date

__all__ = ["OnlineStrategy", "RollingStrategy", "rolling_rec_key", "task_test_segment"]

logger = logging.getLogger(__name__)


def task_test_segment(rec: Any) -> tuple:
    """The test segment of a recorder's stored ``task``."""
    return tuple(rec.load_object("task")["dataset"]["kwargs"]["segments"]["test"])


def rolling_rec_key(rec: Any) -> tuple:
    """qlib's RollingStrategy record key: ``(model class, test segment)`` from the stored ``task``."""
    task = rec.load_object("task")
    return task["model"]["class"], task["dataset"]["kwargs"]["segments"]["test"]


class OnlineStrategy:
    """Decide the tasks to train and the models to put online (abstract: ``prepare_tasks``, ``first_tasks``,
    ``get_collector``).

    Args:
        name_id: a unique name; also the experiment the models are trained into.
    """

    def __init__(self, name_id: str) -> None:
        self.name_id = name_id
        self.logger = logger
        self.tool: OnlineTool = OnlineTool()

    def prepare_tasks(self, cur_time: Any, **kwargs: Any) -> list[dict]:
        raise NotImplementedError("Please implement the `prepare_tasks` method.")

    def prepare_online_models(self, trained_models: list, cur_time: Any = None) -> list:
        """Put ``trained_models`` online (all others of the experiment offline) and return them; with no new
        models, the currently online ones (re-listed from the store, tags unchanged). qlib's "naive" rule: every
        newly trained model goes online in the same step."""
        if not trained_models:
            return self.tool.online_models()
        self.tool.reset_online_tag(trained_models)
        return list(trained_models)

    def first_tasks(self) -> list[dict]:
        raise NotImplementedError("Please implement the `first_tasks` method.")

    def get_collector(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("Please implement the `get_collector` method.")


class RollingStrategy(OnlineStrategy):
    """The latest rolling model(s) are online (qlib's ``RollingStrategy``).

    Args:
        name_id: the strategy name, its experiment name and the trainer's experiment name.
        task_template: a task dict or a list of them (one rolling chain per template).
        rolling_gen: the :class:`RollingGen` making the windows.
    """

    def __init__(self, name_id: str, task_template: dict | list[dict], rolling_gen: RollingGen) -> None:
        super().__init__(name_id=name_id)
        self.exp_name = self.name_id
        if not isinstance(task_template, list):
            task_template = [task_template]
        self.task_template = task_template
        if not isinstance(rolling_gen, RollingGen):
            raise ConfigError(f"RollingStrategy.rolling_gen: a RollingGen, got {type(rolling_gen).__name__}")
        self.rg = rolling_gen
        self.tool = OnlineToolR(self.exp_name)
        self.ta = TimeAdjuster()

    def get_collector(self, process_list: Any = None, rec_key_func: Any = None, rec_filter_func: Any = None,
                      artifacts_key: Any = None) -> RecorderCollector:
        """A collector of every finished recorder's ``pred.pkl`` keyed ``(model class, test segment)``, merged per
        model class (``RollingGroup``). As in qlib it does not look at online tags."""
        return RecorderCollector(
            self.exp_name,
            process_list=[RollingGroup()] if process_list is None else process_list,
            rec_key_func=rolling_rec_key if rec_key_func is None else rec_key_func,
            rec_filter_func=rec_filter_func,
            artifacts_key=artifacts_key,
        )

    def first_tasks(self) -> list[dict]:
        """The rolling tasks of every template."""
        return task_generator(tasks=self.task_template, generators=self.rg)

    def refresh_calendar(self) -> None:
        """Make the RollingGen (and this strategy) read the calendar again (the data may have new days)."""
        self.rg.ta = TimeAdjuster(future=True)
        self.ta = TimeAdjuster()

    def prepare_tasks(self, cur_time: Any, **kwargs: Any) -> list[dict]:
        """The rolling tasks following the latest online model(s) whose test window starts on or before
        ``cur_time`` (None: the last calendar date). ``kwargs`` are not accepted (as in qlib)."""
        if kwargs:
            raise ConfigError(f"RollingStrategy.prepare_tasks: unexpected task_kwargs {sorted(kwargs)}")
        self.refresh_calendar()
        latest, max_test = self._list_latest(self.tool.online_models())
        if max_test is None:
            logger.warning("No latest online recorders, no new tasks.")
            return []
        calendar_latest = transform_end_date(cur_time)
        logger.info("current time %s, last rolling test start %s, rolling step %d", calendar_latest, max_test[0],
                    self.rg.step)
        res: list[dict] = []
        for rec in latest:
            res.extend(self.rg.gen_following_tasks(rec.load_object("task"), calendar_latest))
        return res

    @staticmethod
    def _list_latest(rec_list: list) -> tuple[list, tuple | None]:
        """The recorders whose test segment is the largest one (qlib's tuple order), and that segment."""
        if not rec_list:
            return rec_list, None
        segs = [task_test_segment(rec) for rec in rec_list]
        max_test = max(segs, key=lambda s: (s[0], s[1] is None, s[1] or s[0]))
        return [rec for rec, s in zip(rec_list, segs) if s == max_test], max_test
