"""``data import --append`` is all-or-nothing: a real kill -9 at any step leaves the directory as before or after
(before for a kill up to the commit point, after for one past it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qlib_prefect.data import storage as st
from qlib_prefect.data.importer import import_frame
from qlib_prefect.data.provider import LocalProvider
from qlib_prefect.errors import DataFormatError

_CODES = ["AAA", "BBB", "CCC"]

# The child logs every step of the append that changes files -- os.replace (a staged file, the journal, a
# publish), os.write (a tail appended in place), storage._sync (a durability barrier), os.truncate (a roll-back)
# -- and kills itself with SIGKILL instead of taking step number n (n=0: never; the log goes to stdout).
_CHILD = """
import json, os, signal, sys
import pandas as pd
from qlib_prefect.data import storage as st
from qlib_prefect.data.importer import import_frame
n = int(sys.argv[3]); log = []

def hook(name, real, label):
    def step(*a, **k):
        log.append([name, label(a)])
        if len(log) == n:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*a, **k)
    return step

os.replace = hook("replace", os.replace, lambda a: os.path.basename(a[1]))
os.write = hook("write", os.write, lambda a: "")
os.truncate = hook("truncate", os.truncate, lambda a: os.path.basename(a[0]))
st._sync = hook("sync", st._sync, lambda a: "")
import_frame(pd.read_pickle(sys.argv[2]), sys.argv[1], append=True, markets={"two": "AAA,DDD"})
print(json.dumps(log))
"""


def _frame(dates: pd.DatetimeIndex, codes: list[str], seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [
        {"symbol": c, "date": d, "open": o, "high": o + 1, "low": o - 1, "close": o + 0.5, "volume": 1e6}
        for c in codes
        for d, o in zip(dates, 10 + rng.random(len(dates)))
    ]
    return pd.DataFrame(rows)


def _snapshot(root: Path) -> dict[str, bytes]:
    """Every data file's bytes (the quality report, rewritten after the append, is a report, not data)."""
    st.read_calendar(root)  # opening the directory recovers an interrupted append
    out = {}
    for d, dirs, files in os.walk(root):
        dirs[:] = [x for x in dirs if not x.startswith(".")]
        for f in files:
            if not f.startswith(".") and not d.startswith(str(root / "quality")):
                out[str(Path(d, f).relative_to(root))] = Path(d, f).read_bytes()
    return out


@pytest.fixture(scope="module")
def states(tmp_path_factory):
    base = tmp_path_factory.mktemp("append")
    dates = pd.bdate_range("2021-01-04", periods=30)
    import_frame(_frame(dates[:20], _CODES, 1), base / "before", markets={"two": "AAA,BBB"})
    new = _frame(dates[20:], [*_CODES, "DDD"], 2)
    new.to_pickle(base / "new.pkl")
    shutil.copytree(base / "before", base / "after")
    import_frame(new, base / "after", append=True, markets={"two": "AAA,DDD"})
    return base, _snapshot(base / "before"), _snapshot(base / "after")


def _run_child(dest: Path, new: Path, n: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.run(
        [sys.executable, "-c", _CHILD, str(dest), str(new), str(n)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_append_survives_kill_at_every_stage(states, tmp_path):
    base, before, after = states
    assert before != after
    probe = tmp_path / "probe"
    shutil.copytree(base / "before", probe)
    log = json.loads(_run_child(probe, base / "new.pkl", 0).stdout.splitlines()[-1])  # never killed
    assert _snapshot(probe) == after
    # the protocol: staged files (new instrument's bins, instrument files, calendar), the journal of the old
    # lengths, one write per continuing bin, a barrier, the committed journal (the commit point), the staged
    # files' publishes, a barrier, then the quality report (a report, not data)
    names = [name for name, _ in log]
    journal = [i for i, (name, label) in enumerate(log) if name == "replace" and label == ".txn-journal"]
    writes = [i for i, name in enumerate(names) if name == "write"]
    syncs = [i for i, name in enumerate(names) if name == "sync"]
    prepared, commit = journal
    tails = sum(1 for k in after if k in before and before[k] != after[k] and k.startswith("features"))
    staged = sum(1 for k in after if before.get(k) != after[k] and not k.startswith("quality")) - tails
    assert len(writes) == tails == 3 * 7 and "truncate" not in names
    assert prepared == staged and writes == list(range(prepared + 1, prepared + 1 + tails))
    assert syncs == [writes[-1] + 1, commit + staged + 1] and commit == syncs[0] + 1
    assert all(n == "replace" for n in names[commit + 1 : syncs[1]])
    # kill instead of step i (0-based; the child counts from 1): before the commit point -> as before
    points = {0: "before", staged // 2: "before", prepared: "before", writes[0]: "before",
              writes[tails // 2]: "before", writes[-1]: "before", syncs[0]: "before", commit: "before",
              commit + 1: "after", commit + 1 + staged // 2: "after", syncs[1]: "after", syncs[1] + 1: "after"}
    for i, want in points.items():
        dest = tmp_path / f"kill{i}"
        shutil.copytree(base / "before", dest)
        r = _run_child(dest, base / "new.pkl", i + 1)
        assert r.returncode == -9, (i, r.stderr[-2000:])
        snap = _snapshot(dest)
        assert snap == (before if want == "before" else after), f"kill at step {i} {log[i]}: not {want}"
        assert not [p for p in dest.iterdir() if p.name.startswith(".txn")], "staging or journal left behind"
        LocalProvider(dest).calendar()  # readable
        # a re-append after the kill succeeds (or adds nothing when the first one had committed)
        import_frame(pd.read_pickle(base / "new.pkl"), dest, append=True, markets={"two": "AAA,DDD"})
        assert _snapshot(dest) == after


# ------------------------------------------------------------------------------- recovery from a simulated state
_DEAD = "p999999999-1"  # above any pid_max: a writer that is gone


def _split(base: Path, after: dict[str, bytes]) -> tuple[dict[str, tuple[int, bytes]], dict[str, bytes]]:
    """The append ``before -> after`` as the transaction does it: ``{rel: (old size, tail)}`` of the continuing
    bins (extended in place) and ``{rel: bytes}`` of the staged files (new bins, instrument files, calendar)."""
    before = base / "before"
    tails, staged = {}, {}
    for rel, data in after.items():
        if rel.startswith("quality"):
            continue
        old = before / rel
        if rel.startswith("features") and old.exists():
            b = old.read_bytes()
            if b != data:
                assert data.startswith(b)
                tails[rel] = (len(b), data[len(b) :])
        elif not old.exists() or old.read_bytes() != data:
            staged[rel] = data
    return tails, staged


def _simulate(base: Path, after: dict, dest: Path, *, state: str, n_tails: int, torn: bool = False,
              n_published: int = 0, owner: str = _DEAD, version: int = 2) -> None:
    """Leave ``dest`` as a writer ``owner`` killed at a given step leaves it: the staged files, a journal in
    ``state`` (version 1: the first format, committed, no tails), ``n_tails`` tails written (the next one torn
    halfway with ``torn``), ``n_published`` staged files already renamed into place."""
    tails, staged = _split(base, after)
    shutil.copytree(base / "before", dest)
    staging = dest / f".txn-{owner}"
    for rel, data in staged.items():
        (staging / rel).parent.mkdir(parents=True, exist_ok=True)
        (staging / rel).write_bytes(data)
    (dest / f".txn-journal.{owner}.tmp").write_text("{}")  # a journal's temporary file, never renamed
    journal: dict = {"staging": staging.name, "files": sorted(staged)}
    if version == 2:
        journal = {"version": 2, "state": state, "owner": owner, **journal,
                   "tails": [[rel, size] for rel, (size, _) in sorted(tails.items())]}
    (dest / ".txn-journal").write_text(json.dumps(journal))
    for k, (rel, (_, tail)) in enumerate(sorted(tails.items())):
        if k < n_tails or (k == n_tails and torn):
            with open(dest / rel, "ab") as fp:
                fp.write(tail if k < n_tails else tail[: len(tail) // 2 + 1])
    for rel in sorted(staged)[:n_published]:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / rel, dest / rel)


@pytest.mark.parametrize(
    ("case", "kw", "want"),
    [
        ("journal written, no tail yet", {"state": "prepared", "n_tails": 0}, "before"),
        ("tails half written, one torn", {"state": "prepared", "n_tails": 10, "torn": True}, "before"),
        ("all tails written, not committed", {"state": "prepared", "n_tails": 21}, "before"),
        ("committed, nothing published", {"state": "committed", "n_tails": 21}, "after"),
        ("committed, half published", {"state": "committed", "n_tails": 21, "n_published": 5}, "after"),
        ("committed, all published", {"state": "committed", "n_tails": 21, "n_published": 10}, "after"),
    ],
)
def test_recover_undoes_or_finishes_a_dead_writers_journal(states, tmp_path, case, kw, want):
    base, before, after = states
    dest = tmp_path / "d"
    _simulate(base, after, dest, **kw)
    st.recover(dest)
    assert _snapshot(dest) == (before if want == "before" else {k: v for k, v in after.items()
                                                               if not k.startswith("quality")}), case
    assert not [p.name for p in dest.iterdir() if p.name.startswith(".txn")]


def test_recover_rolls_forward_a_first_format_journal(states, tmp_path):
    """A journal of the earlier format (every changed file staged whole, no state: written at the commit point)."""
    base, _, after = states
    tails, staged = _split(base, after)
    dest = tmp_path / "d"
    shutil.copytree(base / "before", dest)
    staging = dest / f".txn-{_DEAD}"
    files = {**staged, **{rel: (dest / rel).read_bytes() + tail for rel, (_, tail) in tails.items()}}
    for rel, data in files.items():
        (staging / rel).parent.mkdir(parents=True, exist_ok=True)
        (staging / rel).write_bytes(data)
    (dest / ".txn-journal").write_text(json.dumps({"staging": staging.name, "files": sorted(files)}))
    os.replace(staging / "calendars/day.txt", dest / "calendars/day.txt")  # killed during the roll-forward
    st.recover(dest)
    assert _snapshot(dest) == {k: v for k, v in after.items() if not k.startswith("quality")}
    assert not [p.name for p in dest.iterdir() if p.name.startswith(".txn")]


def test_live_writers_journal_is_left_alone_and_readers_see_before(states, tmp_path):
    """While a live writer's tails are in place (before its commit point), readers leave its journal alone and
    read the directory as before (the tails past the calendar are not read); once it is gone, it is undone."""
    from qlib_prefect.data.integrity import problems
    from qlib_prefect.utils.owner import token

    base, before, after = states
    codes = [*_CODES, "DDD"]
    want = {f: LocalProvider(base / "before").load_field(f, codes).values for f in ("close", "change")}
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        owner = token(sleeper.pid)
        dest = tmp_path / "d"
        _simulate(base, after, dest, state="prepared", n_tails=21, owner=owner)
        st.recover(dest)
        assert (dest / ".txn-journal").exists() and st.append_pending(dest)
        prov = LocalProvider(dest)
        for f, v in want.items():
            np.testing.assert_array_equal(prov.load_field(f, codes).values, v)
        assert problems(dest) == []
        with pytest.raises(DataFormatError, match="run past the calendar end"):
            st.read_bin(st.feature_path(dest, "AAA", "close"), len(prov.calendar()))  # the tail is there
    finally:
        sleeper.kill()
        sleeper.wait()
    assert _snapshot(dest) == before  # the writer is gone: rolled back
    assert not st.append_pending(dest)


def _with_a_value_past_the_calendar(base, tmp_path, field: str):
    """A copy of the "before" directory whose BBB ``field`` bin holds one value past the calendar (damage)."""
    dest = tmp_path / "d"
    shutil.copytree(base / "before", dest)
    with open(st.feature_path(dest, "BBB", field), "ab") as fp:
        fp.write(np.float32(1.0).tobytes())
    return dest


def test_provider_still_refuses_a_bin_past_the_calendar(states, tmp_path):
    base, _, _ = states
    dest = _with_a_value_past_the_calendar(base, tmp_path, "close")
    with pytest.raises(DataFormatError, match=r"bbb/close\.day\.bin: corrupted \.bin file: .* run past the calendar"):
        LocalProvider(dest).load_field("close", _CODES)


def test_append_failing_validation_writes_nothing(states, tmp_path):
    """A continuing bin found damaged while the tails are planned (after others were planned): nothing written."""
    base, _, _ = states
    dest = _with_a_value_past_the_calendar(base, tmp_path, "high")
    damaged = _files(dest)
    with pytest.raises(DataFormatError, match=r"bbb/high\.day\.bin: data runs past the calendar end"):
        import_frame(pd.read_pickle(base / "new.pkl"), dest, append=True, markets={"two": "AAA,DDD"})
    assert _files(dest) == damaged


def test_append_failing_midway_through_the_tails_is_undone(states, tmp_path, monkeypatch):
    """An error while the tails are written (a full disk) rolls back in the same process: byte-identical."""
    base, _, _ = states
    dest = tmp_path / "d"
    shutil.copytree(base / "before", dest)
    before = _files(dest)
    real, calls = st._append_tail, [0]

    def append_tail(*a):
        calls[0] += 1
        if calls[0] == 8:
            raise OSError(28, "No space left on device")
        real(*a)

    monkeypatch.setattr(st, "_append_tail", append_tail)
    with pytest.raises(OSError, match="No space left"):
        import_frame(pd.read_pickle(base / "new.pkl"), dest, append=True, markets={"two": "AAA,DDD"})
    assert calls[0] == 8
    assert _files(dest) == before


def _files(root: Path) -> dict[str, bytes]:
    """Every file under ``root``, hidden ones included (journal, staging)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


_SLOW = """
import os, sys, time
import pandas as pd
from qlib_prefect.data.importer import import_frame
if sys.argv[3]:  # pause inside the first tail write, after telling the test so
    real, calls = os.write, [0]
    def write(*a):
        calls[0] += 1
        if calls[0] == 1:
            open(sys.argv[3], "w").close()
            time.sleep(3)
        return real(*a)
    os.write = write
print(import_frame(pd.read_pickle(sys.argv[2]), sys.argv[1], append=True, markets={"two": "AAA,DDD"}).new_dates)
"""


def test_concurrent_appends_are_serialised(states, tmp_path):
    """A second append started while the first one's tails are in place waits for it, then finds nothing new."""
    base, before, after = states
    dest = tmp_path / "d"
    shutil.copytree(base / "before", dest)
    marker = tmp_path / "in-tails"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    args = [sys.executable, "-c", _SLOW, str(dest), str(base / "new.pkl")]
    first = subprocess.Popen([*args, str(marker)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        t0 = time.monotonic()
        while not marker.exists() and first.poll() is None and time.monotonic() - t0 < 120:
            time.sleep(0.05)
        assert marker.exists() and st.append_pending(dest)
        assert _snapshot(dest) == before  # a reader meanwhile: the directory as before
        second = subprocess.run([*args, ""], env=env, capture_output=True, text=True, timeout=120)
        out, _ = first.communicate(timeout=120)
    finally:
        first.kill()
        first.wait()
    assert first.returncode == 0 and out.split() == ["10"]
    assert second.returncode == 0 and second.stdout.split() == ["0"], second.stderr[-2000:]
    assert _snapshot(dest) == after


def test_append_failing_after_its_commit_point_is_finished_by_the_next_reader(states, tmp_path, monkeypatch):
    """An error while the staged files are renamed in (after the commit point) keeps the staging and the committed
    journal; the next reader, in the same process, rolls it forward."""
    base, _, after = states
    dest = tmp_path / "d"
    shutil.copytree(base / "before", dest)
    real, failed = os.replace, []

    def replace(src, dst, *a, **k):
        if Path(dst) == dest / "calendars/day.txt" and not failed:  # the calendar's publish fails, once
            failed.append(src)
            raise OSError(5, "Input/output error")
        return real(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="Input/output error"):
        import_frame(pd.read_pickle(base / "new.pkl"), dest, append=True, markets={"two": "AAA,DDD"})
    assert json.loads((dest / ".txn-journal").read_text())["state"] == "committed"
    assert _snapshot(dest) == {k: v for k, v in after.items() if not k.startswith("quality")}
    assert not [p.name for p in dest.iterdir() if p.name.startswith(".txn")]
