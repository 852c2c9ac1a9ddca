"""Credentials never reach artifacts or error messages; store-recorder artifact names cannot leave the entry."""

from __future__ import annotations

import pytest

from qlib_prefect.errors import RecorderError
from qlib_prefect.orchestration._recorder import StoreRecorder
from qlib_prefect.task import connection
from qlib_prefect.utils.redaction import redact, redact_uri


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("mongodb://qlib:hunter2@db:27017/", "mongodb://qlib:***@db:27017/"),
        ("postgresql+psycopg://u:p%40ss@h/db", "postgresql+psycopg://u:***@h/db"),
        ("https://tok123@mlflow.example.com", "https://***@mlflow.example.com"),
        ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
    ],
)
def test_redact_uri(uri, shown):
    assert redact_uri(uri) == shown
    assert redact({"qlib_init": {"mongo": {"task_url": uri}}, "l": [uri]}) == {
        "qlib_init": {"mongo": {"task_url": shown}}, "l": [shown]}


def test_unreachable_pool_error_hides_the_password(monkeypatch):
    from qlib_prefect.config.runtime import C

    monkeypatch.setitem(C, "mongo", {"task_url": "mongodb://qlib:hunter2@127.0.0.1:1/", "task_db_name": "d"})
    err = connection.unreachable("task pool 'p' fetch", OSError("mongodb://qlib:hunter2@127.0.0.1:1 refused"))
    assert "hunter2" not in str(err) and "qlib:***@127.0.0.1:1" in str(err)


@pytest.mark.parametrize("name", ["../evil.pkl", "a/../../evil.pkl", "/abs/evil.pkl", "..\\evil.pkl", "C:evil"])
def test_store_recorder_refuses_escaping_names(tmp_path, name):
    entry = tmp_path / "entry"
    rec = StoreRecorder(path=entry)
    with pytest.raises(RecorderError, match="relative path without"):
        rec.save_objects(**{name: {"x": 1}})
    with pytest.raises(RecorderError):
        rec.save_objects(artifact_path=name, **{"ok.pkl": 1})
    assert not (tmp_path / "evil.pkl").exists() and not list(tmp_path.rglob("evil.pkl"))
    rec.save_objects(**{"sub/ok.pkl": 1})
    assert (entry / "artifacts" / "sub" / "ok.pkl").exists()
