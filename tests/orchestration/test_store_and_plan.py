"""Content store atomicity and stage-key dependency rules (no Prefect server needed)."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
from orch_helpers import small_task

from qlib_prefect.orchestration import ContentStore, StageCachePolicy
from qlib_prefect.orchestration._cache import build_plan
from qlib_prefect.orchestration._recorder import StoreRecorder


def test_store_build_is_atomic_and_failed_builds_leave_nothing(tmp_path: Path) -> None:
    store = ContentStore(root=tmp_path / "store")
    with pytest.raises(RuntimeError):
        with store.build("train", "k1") as tmp:
            (tmp / "artifacts" / "half.pkl").write_bytes(b"x")
            raise RuntimeError("boom")
    assert not store.exists("train", "k1")
    assert list((tmp_path / "store" / "train").iterdir()) == []
    # an incomplete directory (no marker) is ignored and replaced
    (tmp_path / "store" / "train" / "k1" / "artifacts").mkdir(parents=True)
    assert store.get("train", "k1") is None
    with store.build("train", "k1") as tmp:
        rec = StoreRecorder(path=tmp)
        rec.save_objects(artifact_path="sub", **{"a.pkl": [1, 2]})
        rec.log_metrics(step=3, loss=0.5)
        rec.flush()
    entry = store.require("train", "k1")
    assert entry.artifact_files() == ["sub/a.pkl"]
    assert entry.metrics() == [["loss", 0.5, 3]]
    assert (entry.path / "_COMPLETE").read_text() == "k1"


def test_store_recorder_reads_fall_back_to_upstream(tmp_path: Path) -> None:
    up = tmp_path / "up"
    StoreRecorder(path=up).save_objects(**{"pred.pkl": {"p": 1}})
    rec = StoreRecorder(path=tmp_path / "own", upstream=[up])
    rec.save_objects(artifact_path="sig_analysis", **{"ic.pkl": 0.1})
    assert rec.load_object("pred.pkl") == {"p": 1}
    assert rec.list_artifacts() == ["pred.pkl", "sig_analysis"]
    assert rec.list_artifacts("sig_analysis") == ["sig_analysis/ic.pkl"]
    from qlib_prefect.errors import LoadObjectError

    with pytest.raises(LoadObjectError, match=r"missing\.pkl"):
        rec.load_object("missing.pkl")


def _plan(task: dict, fp: str = "fp", version: str = "1") -> dict:
    return {s.name: s for s in build_plan(task, fingerprint=fp, env="e", version=version)}


def test_stage_keys_follow_dependencies() -> None:
    base = _plan(small_task())
    assert list(base) == ["dataset", "train", "record.0.SignalRecord", "record.1.SigAnaRecord",
                          "record.2.PortAnaRecord"]
    assert base["record.1.SigAnaRecord"].upstream == ("record.0.SignalRecord",)
    assert base["record.2.PortAnaRecord"].upstream == ("record.0.SignalRecord",)
    assert base["record.0.SignalRecord"].needs_model

    def changed(mutate) -> set[str]:
        task = small_task()
        mutate(task)
        new = _plan(task)
        return {n for n in base if base[n].key != new[n].key}

    assert changed(lambda t: None) == set()
    assert changed(lambda t: t["record"][2]["kwargs"]["config"]["strategy"]["kwargs"].update(topk=7)) == {
        "record.2.PortAnaRecord"}
    assert changed(lambda t: t["record"][1]["kwargs"].update(ana_long_short=True)) == {"record.1.SigAnaRecord"}
    assert changed(lambda t: t["model"]["kwargs"].update(learning_rate=0.1)) == set(base) - {"dataset"}
    assert changed(lambda t: t["dataset"]["kwargs"]["segments"].update(test=["2016-07-01", "2017-06-28"])) == set(
        base)
    # dates written differently hash the same
    assert changed(lambda t: t["dataset"]["kwargs"]["segments"].update(test=["20160701", "2017-06-29"])) == set()
    assert {n for n in base if base[n].key != _plan(small_task(), fp="other")[n].key} == set(base)
    assert {n for n in base if base[n].key != _plan(small_task(), version="2")[n].key} == set(base)


def test_cache_policy_returns_the_stage_key() -> None:
    pol = StageCachePolicy()
    assert pol.compute_key(None, {"stage_key": "abc", "ctx": object()}, {}) == "abc"
    assert pol.compute_key(None, {}, {}) is None
    assert copy.deepcopy(pol).key_param == "stage_key"


def test_store_keeps_a_complete_entry_unless_overwritten(tmp_path: Path) -> None:
    store = ContentStore(root=tmp_path)
    for value, overwrite in ((b"first", False), (b"second", False), (b"third", True)):
        with store.build("s", "k", overwrite=overwrite) as tmp:
            (tmp / "artifacts" / "v").write_bytes(value)
    assert (store.require("s", "k").artifact_dir / "v").read_bytes() == b"third"
    store.delete("s", "k")
    assert not store.exists("s", "k") and not store.path("s", "k").exists()


def test_code_version_hashes_the_package_sources(tmp_path: Path, monkeypatch) -> None:
    """Stage keys use ``code_version()``: the package version plus a hash of the sources, which changes with them."""
    import shutil

    import qlib_prefect
    from qlib_prefect import _version

    cv = _version.code_version()
    assert re.fullmatch(rf"{re.escape(qlib_prefect.__version__)}\+[0-9a-f]{{12}}", cv) and _version.code_version() == cv
    copy = tmp_path / "qlib_prefect"
    shutil.copytree(Path(qlib_prefect.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(_version, "__file__", str(copy / "_version.py"))
    monkeypatch.setattr(_version, "_CODE_VERSION", [])
    assert _version.code_version() == cv  # same sources elsewhere: same version
    (copy / "backtest" / "exchange.py").write_text((copy / "backtest" / "exchange.py").read_text() + "\n# edited\n")
    monkeypatch.setattr(_version, "_CODE_VERSION", [])
    assert _version.code_version() != cv
