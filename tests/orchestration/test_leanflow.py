"""The one Flow base: its call protocol survives ``with_options`` (Prefect's returns a plain ``Flow``)."""

from __future__ import annotations

from prefect.task_runners import ThreadPoolTaskRunner

from qlib_prefect.orchestration import LeanFlow, qlib_workflow, rolling_workflow


def test_with_options_keeps_the_lean_call_and_the_prepare_hook() -> None:
    for flow in (qlib_workflow, rolling_workflow):
        runner = ThreadPoolTaskRunner(max_workers=3)
        other = flow.with_options(task_runner=runner)
        assert isinstance(other, LeanFlow) and other.prepare is flow.prepare and other.name == flow.name
        assert other.task_runner is runner and flow.task_runner is not runner


def test_prepare_runs_before_the_flow_and_its_error_creates_no_flow_run() -> None:
    calls: list[tuple] = []

    def prepare(x: int) -> None:
        calls.append(("prepare", x))
        if x < 0:
            raise ValueError("negative")

    def body(x: int) -> int:
        calls.append(("body", x))
        return x * 2

    flow = LeanFlow(body, prepare=prepare, name="lean-probe", validate_parameters=False)
    try:
        flow(-1)
    except ValueError as e:
        assert str(e) == "negative"
    assert calls == [("prepare", -1)]  # the body (a flow run) never started
