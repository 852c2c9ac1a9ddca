"""The one Flow base: its call protocol survives ``with_options`` (Prefect's returns a plain ``Flow``); owner tags
name the flow run, not its task runs."""

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


def test_owner_tags_name_the_flow_run_not_its_task_runs() -> None:
    """The flow run carries the caller's tags and the owner tags (housekeeping finds it by them); its task runs
    carry the caller's tags only: Prefect asks the API for tag concurrency slots before every tagged task run.
    The flow's version stays Prefect's default, a hash of the flow function's file."""
    from prefect import tags, task
    from prefect.client.orchestration import get_client
    from prefect.context import TaskRunContext
    from prefect.runtime import flow_run as current_flow_run
    from prefect.utilities.hashing import file_hash

    from qlib_prefect.orchestration.housekeeping import flow_run_owner_tags

    @task(name="lean-tag-probe-task")
    def step() -> list[str]:
        return list(TaskRunContext.get().task_run.tags)

    def body() -> tuple[str, list[str]]:
        return str(current_flow_run.id), step()

    flow = LeanFlow(body, name="lean-tag-probe")
    assert flow.version == file_hash(__file__)
    with tags("caller-tag"):
        fr_id, task_tags = flow()
    with get_client(sync_client=True) as client:
        fr = client.read_flow_run(fr_id)
    assert set(fr.tags) == set(flow_run_owner_tags()) | {"caller-tag"}
    assert set(task_tags) == {"caller-tag"}
