"""Training progress lands in the Prefect task logs when the CLI routing is on (a real API server, real logs)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from orch_helpers import env_for_subprocess

ROOT = Path(__file__).resolve().parents[2]

_SCRIPT = """
import json, sys
sys.path.insert(0, sys.argv[1])
from qlib_prefect.cli.preflight import route_progress_logs
route_progress_logs()  # as `qlib-prefect run` does, before Prefect is imported
from prefect import flow, task
from prefect.runtime import task_run
from test_gbdt import SEGMENTS, make_dataset, make_frame
from qlib_prefect.model.gbdt import LGBModel

@task
def train() -> str:
    LGBModel(num_leaves=7, num_threads=1, early_stopping_rounds=1000).fit(
        make_dataset(make_frame(seed=1), SEGMENTS), num_boost_round=30)
    return str(task_run.id)

@flow
def f() -> str:
    return train()

print(json.dumps({"task_run_id": f()}))
"""

_READ = """
import asyncio, json, sys, time
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterTaskRunId

async def main():
    async with get_client() as c:
        for _ in range(100):
            logs = await c.read_logs(LogFilter(task_run_id=LogFilterTaskRunId(any_=[sys.argv[1]])))
            msgs = [l.message for l in logs if l.name == "qlib_prefect.progress"]
            if any("finished after" in m for m in msgs):
                return msgs
            await asyncio.sleep(0.2)
        return msgs

print(json.dumps(asyncio.run(main())))
"""


def test_training_progress_lines_in_the_task_logs(prefect_api, tmp_path) -> None:
    env = env_for_subprocess(prefect_api, tmp_path / "home", PREFECT_LOGGING_TO_API_ENABLED="true",
                             PYTHONPATH=str(ROOT))
    env.pop("PREFECT_LOGGING_EXTRA_LOGGERS", None)
    run = subprocess.run([sys.executable, "-c", _SCRIPT, str(ROOT / "tests" / "model")], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    task_run_id = json.loads(run.stdout.strip().splitlines()[-1])["task_run_id"]
    read = subprocess.run([sys.executable, "-c", _READ, task_run_id], env=env, capture_output=True, text=True,
                          timeout=120)
    assert read.returncode == 0, read.stderr[-3000:]
    msgs = json.loads(read.stdout.strip().splitlines()[-1])
    assert msgs[0].startswith("LightGBM: iteration 1/30, train's l2 ")
    assert msgs[-1].startswith("LightGBM: finished after 30/30 iterations")
    # the terminal is not a tty here: the same lines on stderr, not echoed again by Prefect's console handler
    assert run.stderr.count("LightGBM: finished after 30/30 iterations") == 1
