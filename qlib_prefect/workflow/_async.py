"""Background logging that cannot lose data (replaces qlib's ``AsyncCaller``).

One :class:`RunLogger` per (tracking URI, run id) in this process, shared by every recorder object of that run.
``log_params``/``log_metrics``/``set_tags`` enqueue and return at once; a worker thread drains the queue in FIFO
order and sends contiguous params/metrics/tags with ``MlflowClient.log_batch`` (explicit run id, so the thread that
logged does not matter). :meth:`RunLogger.flush` waits until everything queued so far is stored and re-raises the
first background error (as :class:`~qlib_prefect.errors.RecorderError`). Recorders flush before every read of the run
and in ``end_run``, so a reader never sees a half-written run (qlib's "Metric 'IC' is malformed" race).

A failing batch is retried item by item, so one bad value does not drop its neighbours.
"""

from __future__ import annotations

import atexit
import collections
import threading
import time
from collections.abc import Callable
from typing import Any

from qlib_prefect.errors import RecorderError
from qlib_prefect.workflow._store import retry_locked

__all__ = ["RunLogger", "flush_all", "get_run_logger", "peek_run_logger"]

_MAX_METRICS = 1000  # mlflow.utils.validation.MAX_METRICS_PER_BATCH
_MAX_PARAMS_TAGS = 100  # MAX_PARAMS_TAGS_PER_BATCH
_MAX_ENTITIES = 1000  # MAX_ENTITIES_PER_BATCH


class RunLogger:
    """A FIFO queue + worker thread that writes one run's params, metrics, tags and small artifacts."""

    def __init__(self, *, client: Any, run_id: str) -> None:
        self.client = client
        self.run_id = run_id
        self._queue: collections.deque[tuple] = collections.deque()
        self._cv = threading.Condition()
        self._pending = 0
        self._errors: list[BaseException] = []
        self._thread: threading.Thread | None = None
        self._closed = False

    # ---- producer side -------------------------------------------------------------------------------------
    def submit(self, *ops: tuple) -> None:
        """Queue operations: ``("param", k, v)``, ``("metric", k, v, ts_ms, step)``, ``("tag", k, v)``,
        ``("call", fn, description)``."""
        if not ops:
            return
        with self._cv:
            if self._closed:
                raise RecorderError(f"run {self.run_id}: logging after the run was ended in this process")
            self._queue.extend(ops)
            self._pending += len(ops)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._work, name=f"qlib-prefect-log-{self.run_id[:8]}", daemon=True
                )
                self._thread.start()
            self._cv.notify_all()

    def flush(self, *, raise_errors: bool = True) -> None:
        """Wait until every queued operation is stored; raise the first background error (then forget it)."""
        with self._cv:
            if self._thread is not None and self._thread is threading.current_thread():
                return  # called from a queued callable: nothing to wait for
            while self._pending > 0:
                if self._thread is None or not self._thread.is_alive():  # pragma: no cover - defensive
                    self._thread = threading.Thread(target=self._work, daemon=True)
                    self._thread.start()
                self._cv.wait(timeout=1.0)
            errors, self._errors = self._errors, []
        if errors and raise_errors:
            first = errors[0]
            more = f" (+{len(errors) - 1} more background error(s))" if len(errors) > 1 else ""
            raise RecorderError(f"background logging to run {self.run_id} failed: {first}{more}") from first

    def close(self, *, raise_errors: bool = True) -> None:
        """Flush, then stop the worker; later submits raise."""
        try:
            self.flush(raise_errors=raise_errors)
        finally:
            with self._cv:
                self._closed = True
                self._cv.notify_all()

    # ---- worker side ---------------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._closed:
                    if not self._cv.wait(timeout=30.0) and not self._queue:
                        self._thread = None  # idle: let the thread end; submit() starts a new one
                        return
                if not self._queue and self._closed:
                    return
                ops = list(self._queue)
                self._queue.clear()
            try:
                self._process(ops)
            except BaseException as e:  # pragma: no cover - _process catches Exceptions itself
                with self._cv:
                    self._errors.append(e)
            finally:
                with self._cv:
                    self._pending -= len(ops)
                    self._cv.notify_all()

    def _process(self, ops: list[tuple]) -> None:
        batch: list[tuple] = []
        for op in ops:
            if op[0] == "call":
                self._send(batch)
                batch = []
                self._run_call(op)
                continue
            if _batch_full(batch, op):
                self._send(batch)
                batch = []
            batch.append(op)
        self._send(batch)

    def _run_call(self, op: tuple) -> None:
        _, fn, desc = op
        try:
            retry_locked(fn)
        except Exception as e:
            self._record(RecorderError(f"{desc}: {type(e).__name__}: {e}"), e)

    def _send(self, batch: list[tuple]) -> None:
        if not batch:
            return
        try:
            self._log_batch(batch)
        except Exception:
            for op in batch:  # isolate the bad item(s); keep the rest
                try:
                    self._log_batch([op])
                except Exception as e:
                    self._record(RecorderError(f"{op[0]} {op[1]!r}={_short(op[2])}: {type(e).__name__}: {e}"), e)

    def _log_batch(self, batch: list[tuple]) -> None:
        from mlflow.entities import Metric, Param, RunTag

        metrics = [Metric(key=o[1], value=o[2], timestamp=o[3], step=o[4]) for o in batch if o[0] == "metric"]
        params = [Param(o[1], o[2]) for o in batch if o[0] == "param"]
        tags = [RunTag(o[1], o[2]) for o in batch if o[0] == "tag"]
        retry_locked(lambda: self.client.log_batch(self.run_id, metrics=metrics, params=params, tags=tags))

    def _record(self, err: BaseException, cause: BaseException) -> None:
        err.__cause__ = cause
        with self._cv:
            self._errors.append(err)


def _batch_full(batch: list[tuple], op: tuple) -> bool:
    if len(batch) >= _MAX_ENTITIES:
        return True
    kind = op[0]
    if kind == "metric":
        return sum(1 for o in batch if o[0] == "metric") >= _MAX_METRICS
    same = [o for o in batch if o[0] == kind]
    if len([o for o in batch if o[0] != "metric"]) >= _MAX_PARAMS_TAGS:
        return True
    return any(o[1] == op[1] for o in same)  # duplicate key in one batch is rejected by MLflow


def _short(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 80 else s[:77] + "..."


_registry: dict[tuple[str, str], RunLogger] = {}
_registry_lock = threading.Lock()


def get_run_logger(uri: str, run_id: str, client: Any) -> RunLogger:
    """The shared logger of a run (created on first use)."""
    with _registry_lock:
        lg = _registry.get((uri, run_id))
        if lg is None or lg._closed:
            lg = _registry[(uri, run_id)] = RunLogger(client=client, run_id=run_id)
        return lg


def peek_run_logger(uri: str, run_id: str | None) -> RunLogger | None:
    """The logger of a run if one exists in this process (used to flush before reads)."""
    if run_id is None:
        return None
    return _registry.get((uri, run_id))


def drop_run_logger(uri: str, run_id: str) -> None:
    with _registry_lock:
        _registry.pop((uri, run_id), None)


def flush_all(*, raise_errors: bool = False, timeout: float | None = None) -> None:
    """Flush every logger of this process (registered with ``atexit``)."""
    del timeout
    for lg in list(_registry.values()):
        try:
            lg.flush(raise_errors=raise_errors)
        except Exception:
            if raise_errors:
                raise


def now_ms() -> int:
    return int(time.time() * 1000)


_: Callable[..., Any] = atexit.register(flush_all)
