"""Benchmark: the online routine's ingest step alone, one day appended to the bundled S&P 500 sample (issue 12).

The sample is materialised as it was on 2017-06-30 (the walk-through's five fields, market ``sp500``; not timed),
then for each repeat a copy of that directory gets the next trading day's CSV drop through
``orchestration._online.ingest_drops`` (the routine's ingest: gate checks on the CSV frame, then the importer's
journaled append, ``quality=False``), timed in this process (imports paid before). The copy is ``os.sync``-ed
before each append, so the append's own fsyncs do not flush the copy. Then ``check_dir`` (the whole-directory
quality report that ``qlib-prefect data import --append`` prints) is timed once, for reference.

    python benchmarks/bench_append.py [--repeats 5] [--out benchmarks/out/append] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(HERE / "out" / "append"))
    ap.add_argument("--profile", action="store_true", help="print the top of a cProfile of the last append")
    a = ap.parse_args()
    sys.path.insert(0, str(HERE.parent / "examples"))
    import pandas as pd
    from online_walkthrough import CUT, FIELDS

    from qlib_prefect.data import storage as st
    from qlib_prefect.data.importer import import_frame
    from qlib_prefect.data.quality import check_dir
    from qlib_prefect.data.sample import load_sample_frame
    from qlib_prefect.orchestration._online import ingest_drops

    work = Path(a.out).resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    frame = load_sample_frame()
    base = work / "base"
    import_frame(frame[frame["date"] <= CUT], base, fields=FIELDS, markets={"sp500": "all-but:SPX"}, quality=False)
    day = sorted(frame.loc[frame["date"] > CUT, "date"].unique())[0]
    drops = work / "drops"
    drops.mkdir()
    rows = frame[frame["date"] == day].assign(date=lambda f: f["date"].dt.strftime("%Y-%m-%d"))
    rows.to_csv(drops / f"{pd.Timestamp(day).date()}.csv", index=False)
    n_files = sum(1 for _ in (base / "features").glob("*/*.bin"))
    res: dict = {"day": str(pd.Timestamp(day).date()), "bin_files": n_files, "append_s": [], "code": st.__file__,
                 "load_before": [round(x, 2) for x in os.getloadavg()]}
    after = None
    for i in range(a.repeats):
        dest = work / f"run{i}"
        shutil.copytree(base, dest)
        os.sync()
        prof = cProfile.Profile() if a.profile and i == a.repeats - 1 else None
        t0 = time.perf_counter()
        if prof:
            prof.enable()
        out = ingest_drops(dest, drops, fields=FIELDS)
        if prof:
            prof.disable()
        res["append_s"].append(round(time.perf_counter() - t0, 3))
        assert out["new_dates"] == [res["day"]], out
        assert st.read_calendar(dest)[-1] == pd.Timestamp(day)
        snap = {p.relative_to(dest).as_posix(): p.read_bytes() for p in dest.rglob("*") if p.is_file()}
        assert after is None or snap == after, "appends of the same day differ"
        after = snap
        if i < a.repeats - 1:
            shutil.rmtree(dest)
    t0 = time.perf_counter()
    check_dir(dest, save=False)
    res["check_dir_s"] = round(time.perf_counter() - t0, 3)
    res["load_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(res))
    s = sorted(res["append_s"])
    print(f"one-day append ({n_files} bins): median {s[len(s) // 2]:.3f} s, min {s[0]:.3f} s over {len(s)}; "
          f"check_dir {res['check_dir_s']:.3f} s")
    if prof:
        pstats.Stats(prof).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
