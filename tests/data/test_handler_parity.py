"""Handler-level parity with the REAL qlib 0.9.7 (goldens in tests/golden/handlers, see its README.md).

Every case of ``configs.json`` is built with qlib-prefect from the same DatasetH config (qlib class paths) on the
same qlib-format data, and each view (``raw``/``infer``/``learn``; train+valid+test concatenated) is compared
with qlib's frame:

* same index (``datetime``, ``instrument``) and the same rows per segment;
* the same columns in the same order (``"<group>/<name>"``);
* NaN positions identical and +-inf positions identical (no tolerance);
* finite cells close: ``|ours - qlib| <= RTOL * |qlib| + ATOL_REL * scale(column)`` with ``RTOL = 1e-5``,
  ``ATOL_REL = 1e-6`` and ``scale`` = the 95th percentile of the column's finite ``|qlib|`` values (an absolute
  floor for near-zero values, proportional to the column's magnitude); at least ``MIN_SHARE = 99.99 %`` of the
  finite cells of every view must be close.

Also checked: ``DatasetH.prepare`` / ``handler.fetch`` / ``get_cols`` calls recorded from qlib (``api_probes``:
selectors, col_sets, squeeze), and that builds served from the on-disk handler cache still equal qlib.

On failure the message lists the worst columns with examples (date, instrument, ours, qlib), so the developers
of the expression engine and the handlers can go straight to the mismatch. For a full report without pytest::

    .venv/bin/python tests/data/test_handler_parity.py [CASE[.VIEW] ...]
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

GOLD = Path(__file__).resolve().parents[1] / "golden" / "handlers"
META = json.loads((GOLD / "configs.json").read_text())
VIEWS = ("raw", "infer", "learn")
SEGMENTS = ("train", "valid", "test")
RTOL, ATOL_REL, MIN_SHARE = 1e-5, 1e-6, 0.9999
MAX_GOLDEN_BYTES = 5_000_000


# ----------------------------------------------------------------------------------------------- goldens


@cache
def expected(key: str) -> pd.DataFrame:
    """qlib's frame for ``"<case>.<view>"`` rebuilt from the stored files (see README: same_as/features_ref)."""
    case, view = key.split(".")
    info = META["views"][case][view]
    if "same_as" in info:
        return expected(info["same_as"])
    df = pd.read_parquet(GOLD / info["file"])
    if "features_ref" in info:
        ref = expected(info["features_ref"])
        feats = [c for c in info["columns"] if c not in df.columns]
        df = pd.concat([ref.loc[df.index, feats], df], axis=1)[info["columns"]]
    return df


def expression_names(case: str) -> dict[str, str]:
    """Column -> expression for cases built from an explicit QlibDataLoader config (for error messages)."""
    h = META["cases"][case]["kwargs"]["handler"]["kwargs"]
    cfg = h.get("data_loader", {}).get("kwargs", {}).get("config", {})
    out = {}
    for grp, (exprs, names) in cfg.items():
        out.update({f"{grp}/{n}": e for e, n in zip(exprs, names)})
    if "label" in h:
        out.update({f"label/{n}": e for e, n in zip(*h["label"])})
    return out


# ----------------------------------------------------------------------------------------------- comparison


@dataclass
class Report:
    """Outcome of comparing one view; ``str(report)`` is the developer-facing message."""

    name: str
    problems: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    share: float = 1.0
    cells: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        head = f"{self.name}: {'OK' if self.ok else 'MISMATCH'} ({self.cells} finite cells compared, " \
               f"{self.share:.6%} within tolerance)"
        return "\n".join([head, *[f"  - {p}" for p in self.problems], *self.lines])


def _fmt_rows(idx: pd.Index, limit: int = 6) -> str:
    if len(idx) == 0:
        return "none"
    df = idx.to_frame(index=False)
    by_inst = df.groupby(df.columns[1]).size().sort_values(ascending=False)
    ex = ", ".join(f"({pd.Timestamp(d).date()}, {i})" for d, i in list(idx[:limit]))
    return f"{len(idx)} rows; per instrument {by_inst.head(8).to_dict()}; e.g. {ex}"


def compare_frames(ours: pd.DataFrame, gold: pd.DataFrame, name: str = "frame", exprs: dict[str, str] | None = None,
                   rtol: float = RTOL, atol_rel: float = ATOL_REL, min_share: float = MIN_SHARE,
                   n_worst: int = 8) -> Report:
    """Compare ``ours`` with qlib's ``gold`` (flat ``group/name`` columns, (datetime, instrument) index)."""
    rep = Report(name)
    exprs = exprs or {}
    gi = pd.MultiIndex.from_arrays([pd.DatetimeIndex(gold.index.get_level_values(0)).as_unit("ns"),
                                    gold.index.get_level_values(1).astype(object)], names=["datetime", "instrument"])
    try:
        oi = pd.MultiIndex.from_arrays([pd.DatetimeIndex(ours.index.get_level_values(0)).as_unit("ns"),
                                        ours.index.get_level_values(1).astype(object)],
                                       names=["datetime", "instrument"])
    except (IndexError, TypeError, ValueError) as e:
        rep.problems.append(f"index is not (datetime, instrument): {ours.index.names} ({e})")
        return rep
    gold = gold.set_axis(gi, axis=0)
    ours = ours.set_axis(oi, axis=0)
    if list(ours.index.names) != ["datetime", "instrument"]:
        rep.problems.append(f"index names {list(ours.index.names)} != ['datetime', 'instrument']")
    if not oi.equals(gi):
        only_o, only_g = oi.difference(gi), gi.difference(oi)
        if len(only_o) or len(only_g):
            rep.problems.append(f"rows only in ours: {_fmt_rows(only_o)}")
            rep.problems.append(f"rows only in qlib: {_fmt_rows(only_g)}")
        else:
            rep.problems.append("same rows but a different row order (qlib sorts by datetime, then instrument)")
    if list(ours.columns) != list(gold.columns):
        miss = [c for c in gold.columns if c not in ours.columns]
        extra = [c for c in ours.columns if c not in gold.columns]
        if miss or extra:
            rep.problems.append(f"columns missing in ours ({len(miss)}): {miss[:10]}; extra ({len(extra)}): "
                                f"{extra[:10]}")
        else:
            first = next(i for i, (a, b) in enumerate(zip(ours.columns, gold.columns)) if a != b)
            rep.problems.append(f"column order differs from position {first}: ours {list(ours.columns[first:first+4])}"
                                f" vs qlib {list(gold.columns[first:first+4])}")
    rows = gi.intersection(oi, sort=False) if not oi.equals(gi) else gi
    cols = [c for c in gold.columns if c in ours.columns]
    if oi.has_duplicates:
        rep.problems.append(f"duplicated index entries in ours: {int(oi.duplicated().sum())}")
        return rep
    a = ours[cols].to_numpy("float64", na_value=np.nan)[oi.get_indexer(rows)]
    b = gold[cols].to_numpy("float64", na_value=np.nan)[gi.get_indexer(rows)]
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    inf_a, inf_b = np.isinf(a), np.isinf(b)
    fin = ~(nan_a | nan_b | inf_a | inf_b)
    nan_mis = nan_a != nan_b
    inf_mis = ((inf_a | inf_b) & ~nan_a & ~nan_b) & (a != b)
    with np.errstate(invalid="ignore", over="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        absb = np.where(fin, np.abs(b), np.nan)
        scale = np.nan_to_num(np.nanpercentile(np.where(np.isfinite(absb), absb, np.nan), 95, axis=0)
                              if absb.size else np.zeros(len(cols)), nan=0.0)
        err = np.where(fin, np.abs(a - b), 0.0)
        tol = rtol * np.abs(np.where(fin, b, 0.0)) + atol_rel * scale
        bad = fin & (err > tol)
        rel = np.where(fin, err / np.maximum(np.abs(np.where(fin, b, 1.0)), 1e-300), 0.0)
    rep.cells = int(fin.sum())
    rep.share = 1.0 - float(bad.sum()) / rep.cells if rep.cells else 1.0
    if nan_mis.any():
        rep.problems.append(f"NaN positions differ in {int(nan_mis.sum())} cells "
                            f"({int((nan_a & ~nan_b).sum())} NaN only in ours, {int((~nan_a & nan_b).sum())} only "
                            "in qlib)")
    if inf_mis.any():
        rep.problems.append(f"+-inf positions differ in {int(inf_mis.sum())} cells")
    if rep.share < min_share:
        rep.problems.append(f"only {rep.share:.6%} of finite cells within rtol={rtol:g} (+ {atol_rel:g} x column "
                            f"scale); need {min_share:.2%}")
    elif bad.any():
        rep.lines.append(f"  (note: {int(bad.sum())} finite cells outside tolerance, within the allowed share)")
    exact = float(((a == b) | (nan_a & nan_b)).mean()) if a.size else 1.0
    rep.lines.append(f"  bitwise-equal cells: {exact:.4%}")
    score = nan_mis.sum(axis=0) + inf_mis.sum(axis=0) + bad.sum(axis=0)
    worst = [j for j in np.argsort(-score, kind="stable")[:n_worst] if score[j] > 0]
    if worst:
        rep.lines.append("  worst columns (nan_mismatch / inf_mismatch / out_of_tol, max rel err; example):")
    for j in worst:
        c = cols[j]
        cand = np.flatnonzero(nan_mis[:, j] | inf_mis[:, j])
        if cand.size == 0:
            cand = np.flatnonzero(bad[:, j])
            cand = cand[np.argsort(-rel[cand, j])]
        ex = []
        for i in cand[:3]:
            d, inst = rows[i]
            ex.append(f"{pd.Timestamp(d).date()} {inst}: ours {a[i, j]!r} vs qlib {b[i, j]!r}")
        maxrel = float(rel[bad[:, j], j].max()) if bad[:, j].any() else 0.0
        expr = f"  [{exprs[c]}]" if c in exprs else ""
        rep.lines.append(f"    {c}{expr}: {int(nan_mis[:, j].sum())} / {int(inf_mis[:, j].sum())} / "
                         f"{int(bad[:, j].sum())}, max rel {maxrel:.2e}; " + "; ".join(ex))
    dt_o = sorted({str(t) for t in ours.dtypes})
    dt_g = sorted({str(t) for t in gold.dtypes})
    if dt_o != dt_g:
        rep.lines.append(f"  (info: dtypes ours {dt_o} vs qlib {dt_g}; values compared as float64)")
    return rep


# ----------------------------------------------------------------------------------------------- ours


def _flat(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    df.columns = ["/".join(map(str, c)) for c in df.columns]
    return df


_built: dict[str, object] = {}


def build_case(case: str) -> object:
    """Build the case's DatasetH with qlib-prefect (handler cache off, so the computation itself is tested)."""
    if case not in _built:
        import qlib_prefect
        from qlib_prefect.utils import init_instance_by_config

        provider = META.get("case_provider_uri", {}).get(case, META["provider_uri"])
        qlib_prefect.init(provider_uri=str(GOLD / provider), region=META["region"])
        old = os.environ.get("QLIB_PREFECT_HANDLER_CACHE")
        os.environ["QLIB_PREFECT_HANDLER_CACHE"] = "0"
        try:
            _built[case] = init_instance_by_config(json.loads(json.dumps(META["cases"][case])))
        finally:
            if old is None:
                os.environ.pop("QLIB_PREFECT_HANDLER_CACHE", None)
            else:
                os.environ["QLIB_PREFECT_HANDLER_CACHE"] = old
    return _built[case]


def compare_view(case: str, view: str) -> Report:
    ds = build_case(case)
    parts = ds.prepare(list(SEGMENTS), col_set=["feature", "label"], data_key=view)
    info = META["views"][case][view]
    rep_rows = {s: len(p) for s, p in zip(SEGMENTS, parts)}
    ours = _flat(pd.concat(parts))
    rep = compare_frames(ours, expected(f"{case}.{view}"), name=f"{case}.{view}", exprs=expression_names(case))
    if rep_rows != info["segment_rows"]:
        rep.problems.append(f"rows per segment: ours {rep_rows} vs qlib {info['segment_rows']}")
    return rep


CASES = [(c, v) for c in META["cases"] for v in VIEWS]


def test_goldens_are_complete_and_small() -> None:
    total = sum(f.stat().st_size for f in GOLD.rglob("*") if f.is_file())
    assert total < MAX_GOLDEN_BYTES, f"goldens are {total / 1e6:.2f} MB"
    assert META["qlib_version"] == "0.9.7"
    for case, view in CASES:
        g = expected(f"{case}.{view}")
        info = META["views"][case][view]
        assert list(g.columns) == info.get("columns", list(g.columns)), (case, view)
        assert all(c.startswith(("feature/", "label/")) for c in g.columns), (case, view)
        assert len(g) == sum(info["segment_rows"].values()), (case, view)
        assert g.index.names == ["datetime", "instrument"]


def test_comparison_detects_a_changed_cell() -> None:
    gold = expected("alpha158.raw")
    ours = gold.copy()
    assert compare_frames(ours, gold).ok
    j = list(gold.columns).index("feature/KMID")
    i = int(np.flatnonzero(np.isfinite(gold.iloc[:, j].to_numpy()))[0])
    ours.iloc[i, j] = np.nan
    rep = compare_frames(ours, gold, name="tampered")
    assert not rep.ok and "NaN positions differ in 1 cells" in str(rep) and "feature/KMID" in str(rep)
    ours = gold.copy()
    ours.iloc[:, j] = ours.iloc[:, j] * (1 + 1e-3)
    assert "within rtol" in str(compare_frames(ours, gold))


@pytest.mark.parametrize(("case", "view"), CASES, ids=[f"{c}.{v}" for c, v in CASES])
def test_handler_matches_qlib(case: str, view: str) -> None:
    rep = compare_view(case, view)
    assert rep.ok, str(rep)


@pytest.mark.parametrize("case", ["alpha158_procs_a", "alpha360", "ops_procs"])
def test_handler_cache_hit_matches_qlib(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The second build comes from the on-disk handler cache (frames + fitted processors) and still equals qlib."""
    import qlib_prefect
    from qlib_prefect.data import cache as hcache
    from qlib_prefect.utils import init_instance_by_config

    monkeypatch.delenv("QLIB_PREFECT_HANDLER_CACHE", raising=False)
    provider = META.get("case_provider_uri", {}).get(case, META["provider_uri"])
    qlib_prefect.init(provider_uri=str(GOLD / provider), region=META["region"])
    init_instance_by_config(json.loads(json.dumps(META["cases"][case])))
    hcache.wait_for_pending_writes()
    ds = init_instance_by_config(json.loads(json.dumps(META["cases"][case])))
    assert ds.handler.cache_hit, f"{case}: second build did not hit the handler cache"
    for view in VIEWS:
        parts = ds.prepare(list(SEGMENTS), col_set=["feature", "label"], data_key=view)
        rep = compare_frames(_flat(pd.concat(parts)), expected(f"{case}.{view}"), name=f"{case}.{view} (cached)")
        assert rep.ok, str(rep)


# ----------------------------------------------------------------------------------------------- API probes


def summarize(obj: object) -> dict:
    """Compact description of a prepare/fetch/get_cols result (the same code as tools/make_handler_goldens.py)."""

    def key(i: object) -> str:
        parts = i if isinstance(i, tuple) else (i,)
        return "|".join(pd.Timestamp(e).strftime("%Y-%m-%d") if isinstance(e, (pd.Timestamp, np.datetime64))
                        else str(e) for e in parts)

    if isinstance(obj, list):
        return {"type": "list", "items": [key(c) for c in obj]}
    if isinstance(obj, pd.Series):
        cols, vals = [str(obj.name)], obj.to_numpy("float64", na_value=np.nan)
    else:
        cols, vals = [key(c) for c in obj.columns], obj.to_numpy("float64", na_value=np.nan)
    idx = obj.index
    return {"type": type(obj).__name__, "shape": list(obj.shape), "index_names": [str(n) for n in idx.names],
            "columns": cols, "index_head": [key(i) for i in idx[:3]], "index_tail": [key(i) for i in idx[-3:]],
            "nansum": float(np.nansum(vals[np.isfinite(vals)])), "n_nan": int(np.isnan(vals).sum())}


PROBES = META.get("api_probes", [])


def _probe_id(p: dict) -> str:
    return f"{p['case']}.{p['call']}({json.dumps(p['args'])[1:-1]}, {json.dumps(p['kwargs'])[1:-1]})"


@pytest.mark.parametrize("probe", PROBES, ids=[_probe_id(p) for p in PROBES])
def test_prepare_fetch_api_matches_qlib(probe: dict) -> None:
    """DatasetH.prepare / handler.fetch / get_cols selectors, col_sets, squeeze, as qlib returns them."""
    ds = build_case(probe["case"])
    args = [slice(*a["slice"]) if isinstance(a, dict) else a for a in probe["args"]]
    target = ds if probe["call"] == "prepare" else ds.handler
    res = getattr(target, probe["call"])(*args, **probe["kwargs"])
    got = [summarize(r) for r in res] if isinstance(res, list) and res and isinstance(res[0], pd.DataFrame) \
        else summarize(res)
    exp = probe["expected"]
    for g, e in zip(got if isinstance(got, list) else [got], exp if isinstance(exp, list) else [exp]):
        assert {k: v for k, v in g.items() if k != "nansum"} == {k: v for k, v in e.items() if k != "nansum"}, \
            f"{_probe_id(probe)}: ours {g} vs qlib {e}"
        if "nansum" in e:
            assert g["nansum"] == pytest.approx(e["nansum"], rel=1e-6, abs=1e-9), _probe_id(probe)
    assert type(got) is type(exp) and (not isinstance(got, list) or len(got) == len(exp))


def main(argv: list[str]) -> int:
    sel = argv or [c for c in META["cases"]]
    ok = True
    for s in sel:
        case, _, view = s.partition(".")
        for v in [view] if view else VIEWS:
            try:
                rep = compare_view(case, v)
                print(rep, flush=True)
                ok &= rep.ok
            except Exception as e:  # report and go on with the next case
                print(f"{case}.{v}: ERROR {type(e).__name__}: {e}", flush=True)
                ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
