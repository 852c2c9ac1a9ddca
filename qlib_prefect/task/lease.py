"""Worker leases of the task pool: a heartbeat thread renews a fetched task's lease until the work ends.

qlib has no leases (a killed worker leaves its task ``running`` forever); see :mod:`qlib_prefect.task.manage`.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

__all__ = ["Heartbeat"]

logger = logging.getLogger(__name__)


class Heartbeat:
    """Renews one task's lease every ``lease_seconds / 3`` in a daemon thread until stopped or the lease is lost.

    ``tm`` is the :class:`~qlib_prefect.task.manage.TaskManager` holding the lease (its ``renew_lease``).
    """

    def __init__(self, tm: Any, task: dict) -> None:
        self.tm = tm
        self.task = task
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{task['_id']}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        interval = max(self.tm.lease_seconds / 3.0, 0.05)
        while not self._stop.wait(interval):
            try:
                if not self.tm.renew_lease(self.task):
                    self.lost = True
                    logger.warning("task %s: lease lost (reclaimed by another worker)", self.task["_id"])
                    return
            except Exception as e:  # network hiccup: try again at the next tick
                logger.warning("task %s: lease renewal failed: %s", self.task["_id"], e)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
