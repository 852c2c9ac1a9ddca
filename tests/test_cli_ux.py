"""What a new user meets first: fail-fast config errors, help texts, ``dataset dump`` on the bundled example,
``data check`` output location, CLI wording of import errors, the sample materialised (and announced) once."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest

from qlib_prefect.cli.main import main
from qlib_prefect.config.loader import ConfigWarning

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "benchmarks" / "LightGBM" / "workflow_config_lightgbm_Alpha158.yaml"

# runs main() in a fresh interpreter and reports what it did: the CPU seconds main() took (wall time depends on
# the machine's load; a lone run takes about 1 s wall), whether Prefect or LightGBM was imported, whether a
# temporary API server was started (it exports PREFECT_API_URL), and the child processes
_PROBE = """
import json, os, sys, time
t0 = time.process_time()
from qlib_prefect.cli.main import main
rc = main(sys.argv[1:])
children = open(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read().split()
print(json.dumps({"rc": rc, "s": time.process_time() - t0, "prefect": "prefect" in sys.modules,
                  "lightgbm": "lightgbm" in sys.modules, "api_url": os.environ.get("PREFECT_API_URL"),
                  "children": children}))
"""


def _probe(args: list[str], tmp_path: Path) -> tuple[dict, str]:
    env = {k: v for k, v in __import__("os").environ.items()
           if k not in ("PREFECT_API_URL", "QLIB_PREFECT_SAMPLE_DIR", "QLIB_PREFECT_EARLY_SERVER")}
    env.update(QLIB_PREFECT_HOME=str(tmp_path / "home"), PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, timeout=120,
                          env=env, cwd=tmp_path)
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


@pytest.fixture
def bad_config(tmp_path: Path) -> Path:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(EXAMPLE.read_text().replace("open_cost: 0.0005", "open_cots: 0.0005"))
    return cfg


@pytest.mark.parametrize("command", [["run"], ["rolling"], ["rolling", "--step", "20"], ["demo", "--config"]])
def test_config_typo_fails_before_any_server_or_heavy_import(command, bad_config, tmp_path) -> None:
    res, err = _probe([*command, str(bad_config)], tmp_path)
    assert res["rc"] == 2
    assert "open_cots: unknown key; did you mean 'open_cost'?" in err and str(bad_config) in err
    assert res["s"] < 3.0, res
    assert not res["prefect"] and not res["lightgbm"] and res["api_url"] is None and res["children"] == []
    assert not (tmp_path / "home" / "sample").exists()  # the sample is not even materialised for a bad config


@pytest.mark.parametrize("command", [["run"], ["rolling"], ["demo", "--config"]])
def test_missing_config_file_fails_before_any_server(command, tmp_path) -> None:
    res, err = _probe([*command, str(tmp_path / "nope.yaml")], tmp_path)
    assert res["rc"] == 2 and "nope.yaml" in err and "not found" in err
    assert res["s"] < 3.0 and not res["prefect"] and res["api_url"] is None and res["children"] == []


def _help(args: list[str], capsys, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "250")  # argparse wraps at the terminal width: no wrapping inside a phrase
    with pytest.raises(SystemExit) as e:
        main([*args, "--help"])
    assert e.value.code == 0
    return capsys.readouterr().out


def test_help_texts(capsys, monkeypatch) -> None:
    top = _help([], capsys, monkeypatch)
    assert "Prefect 3 flows with MLflow 3 tracking" in top
    lines = top.splitlines()
    assert lines.index("examples:") < lines.index(
        "  qlib-prefect demo                                   # LightGBM + Alpha158 on the bundled S&P 500 sample")
    assert any(line.startswith("  qlib-prefect run workflow.yaml --plan") for line in lines)

    for args in (["dataset"], ["dataset", "dump"]):
        lines = _help(args, capsys, monkeypatch).splitlines()
        for example in ("    qlib-prefect dataset dump workflow.yaml learn.parquet --data-key learn --segments train",
                        "    qlib-prefect dataset dump dataset.yaml out.parquet --provider-uri ~/qlib_data/us "
                        "--region us --no-cache"):
            assert example in lines, (args, lines)  # one example per line, not squashed into a paragraph

    dump = _help(["dataset", "dump"], capsys, monkeypatch)
    assert "raw = the loaded features and labels, no processor applied" in dump
    assert "infer = after the infer processors" in dump and "learn = after the infer and learn processors" in dump
    check = _help(["data", "check"], capsys, monkeypatch)
    assert "--jump-threshold R" in check and "close-to-close move larger than R" in check
    assert "--spike-threshold R" in check and "one-day spike" in check
    assert "--report DIR" in check and "default ./quality/ in the working directory" in check


CSV = "date,open,high,low,close,volume,symbol\n2020-01-02,10,11,9,10,100,A\n2020-01-03,10,11,9,11,0,A\n"


def test_reimport_error_names_the_cli_flags(tmp_path, capsys) -> None:
    (tmp_path / "p.csv").write_text(CSV)
    q = tmp_path / "q"
    assert main(["data", "import", str(tmp_path / "p.csv"), "--to", str(q)]) == 0
    capsys.readouterr()
    assert main(["data", "import", str(tmp_path / "p.csv"), "--to", str(q)]) == 2
    err = capsys.readouterr().err
    assert f"{q}: destination exists and is not empty; use --append or --overwrite" in err
    assert "append=True" not in err


def test_data_check_writes_beside_the_command_or_to_report(tmp_path, capsys, monkeypatch) -> None:
    (tmp_path / "p.csv").write_text(CSV)
    q = tmp_path / "q"
    assert main(["data", "import", str(tmp_path / "p.csv"), "--to", str(q)]) == 0
    before = sorted(p.relative_to(q) for p in q.rglob("*"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    capsys.readouterr()
    assert main(["data", "check", str(q)]) == 0
    assert json.loads((work / "quality" / "report.json").read_text())["n_instruments"] == 1
    assert f"report saved to {work / 'quality'}/" in capsys.readouterr().out
    assert main(["data", "check", str(q), "--report", str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep" / "issues.csv").exists()
    assert sorted(p.relative_to(q) for p in q.rglob("*")) == before  # the data directory is never written to


def test_dataset_dump_on_the_bundled_example(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("QLIB_PREFECT_SAMPLE_DIR", raising=False)
    monkeypatch.setenv("QLIB_PREFECT_HOME", str(tmp_path / "home"))
    out = tmp_path / "test.parquet"
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConfigWarning)  # no "undefined template variable" warning
        assert main(["dataset", "dump", str(EXAMPLE), str(out), "--segments", "test"]) == 0
    res = capsys.readouterr()
    stdout = res.out.splitlines()
    sample = next((tmp_path / "home" / "sample").iterdir())
    assert stdout[0] == f"materialising the bundled S&P 500 sample into {sample} (first time only) ..."
    assert stdout[1].startswith(f"wrote {out}: ") and "segments test, data key infer" in stdout[1]
    assert len(stdout) == 2 and "{" not in res.out  # no raw JSON unless asked
    assert "building the Alpha158 dataset" in res.err and "preparing segments test (infer)" in res.err
    df = pd.read_parquet(out)
    assert len(df) > 100_000 and "feature/KMID" in df.columns and "label/LABEL0" in df.columns
    assert df.index.get_level_values("datetime").min() >= pd.Timestamp("2017-01-01")

    # --provider-uri fills the sample variable: no warning; --json - prints the summary (and only then)
    monkeypatch.delenv("QLIB_PREFECT_SAMPLE_DIR")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConfigWarning)
        assert main(["dataset", "dump", str(EXAMPLE), str(tmp_path / "again.parquet"), "--segments", "test",
                     "--provider-uri", str(sample), "--json", "-"]) == 0
    stdout = capsys.readouterr().out.splitlines()
    assert len(stdout) == 2 and stdout[0].startswith("wrote ")  # no materialising line this time
    summary = json.loads(stdout[1])
    assert summary["rows"] == len(df) and summary["cache_hit"] is True


def test_sample_announced_only_when_really_materialised(tmp_path, capsys, monkeypatch) -> None:
    from qlib_prefect.cli.preflight import fill_sample_env

    monkeypatch.setenv("QLIB_PREFECT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("QLIB_PREFECT_SAMPLE_DIR", raising=False)
    first = fill_sample_env(EXAMPLE)
    assert "materialising the bundled S&P 500 sample" in capsys.readouterr().out
    monkeypatch.delenv("QLIB_PREFECT_SAMPLE_DIR")
    assert fill_sample_env(EXAMPLE) == first  # reused: built once, said once
    assert capsys.readouterr().out == ""
    assert fill_sample_env(EXAMPLE) is None  # the variable is set now: nothing to do
