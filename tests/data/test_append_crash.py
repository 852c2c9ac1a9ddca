"""``data import --append`` is all-or-nothing: a real kill -9 at any point leaves the directory as before or after."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qlib_prefect.data import storage as st
from qlib_prefect.data.importer import import_frame
from qlib_prefect.data.provider import LocalProvider

_CODES = ["AAA", "BBB", "CCC"]

# the child counts os.replace calls (each staged file, the journal, each publish) and kills itself with SIGKILL
_CHILD = """
import os, signal, sys
import pandas as pd
from qlib_prefect.data.importer import import_frame
n = int(sys.argv[3]); calls = [0]; real = os.replace
def replace(*a, **k):
    calls[0] += 1
    if calls[0] == n:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*a, **k)
os.replace = replace
import_frame(pd.read_pickle(sys.argv[2]), sys.argv[1], append=True, markets={"two": "AAA,DDD"})
print("calls", calls[0])
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
    total = int(_run_child(probe, base / "new.pkl", 0).stdout.split()[-1])  # n=0: never killed
    assert _snapshot(probe) == after
    # staged writes, then the journal (the commit point), then as many publishes, then the quality report
    staged = sum(1 for k in after if before.get(k) != after[k] and not k.startswith("quality"))
    assert total > 2 * staged + 1
    points = [1, staged // 2, staged, staged + 1, staged + 2, staged + 1 + staged // 2, 2 * staged + 1, total]
    seen = set()
    for n in points:
        dest = tmp_path / f"kill{n}"
        shutil.copytree(base / "before", dest)
        r = _run_child(dest, base / "new.pkl", n)
        assert r.returncode == -9, (n, r.stderr[-2000:])
        snap = _snapshot(dest)
        assert snap in (before, after), f"kill at os.replace #{n}: the directory is neither before nor after"
        seen.add("after" if snap == after else "before")
        assert not [p for p in dest.iterdir() if p.name.startswith(".txn")], "staging or journal left behind"
        LocalProvider(dest).calendar()  # readable
        # a re-append after the kill succeeds (or adds nothing when the first one had committed)
        import_frame(pd.read_pickle(base / "new.pkl"), dest, append=True, markets={"two": "AAA,DDD"})
        assert _snapshot(dest) == after
    assert seen == {"before", "after"}  # both sides of the commit point were hit
