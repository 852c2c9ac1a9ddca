"""Concurrency: several threads logging into several runs of one SQLite store at once."""

from __future__ import annotations

import threading

from qlib_prefect.workflow import MLflowExpManager

N_THREADS = 8
N_METRICS = 1000


def test_eight_threads_thousand_metrics_each_nothing_lost_or_misplaced(sqlite_uri):
    exp = MLflowExpManager(uri=sqlite_uri).get_exp(experiment_name="threads")
    barrier = threading.Barrier(N_THREADS)
    run_ids: dict[int, str] = {}
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            rec = exp.create_recorder(f"thread-{t}")
            rec.start_run()
            run_ids[t] = rec.id
            barrier.wait()
            for i in range(N_METRICS):
                rec.log_metrics(step=i, value=t * 100_000 + i)
                if i % 250 == 0:
                    rec.log_params(**{f"p{i}": f"{t}-{i}"})
                    rec.set_tags(**{f"t{i}": t})
            rec.end_run("FINISHED")
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(N_THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=600)
    assert not errors, errors
    assert len(set(run_ids.values())) == N_THREADS
    for t, rid in run_ids.items():
        rec = exp.get_recorder(recorder_id=rid, create=False)
        assert rec.status == "FINISHED"
        assert rec.name == f"thread-{t}"
        hist = rec.get_metric_history("value")
        assert sorted((m.step, m.value) for m in hist) == [(i, float(t * 100_000 + i)) for i in range(N_METRICS)]
        params = rec.list_params()
        assert {k: v for k, v in params.items() if k.startswith("p")} == {
            f"p{i}": f"{t}-{i}" for i in range(0, N_METRICS, 250)
        }
        assert {k: v for k, v in rec.list_tags().items() if k.startswith("t") and k[1:].isdigit()} == {
            f"t{i}": str(t) for i in range(0, N_METRICS, 250)
        }
