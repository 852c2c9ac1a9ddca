"""Design rules that a green test run would otherwise not show: public seams and the one pipeline executor."""

from __future__ import annotations

import ast
from pathlib import Path

import qlib_prefect

PKG = Path(qlib_prefect.__file__).resolve().parent


def _modules() -> list[tuple[str, Path, ast.Module]]:
    out = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG.parent).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        out.append((name, path, ast.parse(path.read_text(encoding="utf-8"))))
    return out


def _package(module: str, is_pkg: bool) -> str:
    """The subpackage of ``qlib_prefect`` a module belongs to (``qlib_prefect`` for top-level modules)."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 or is_pkg else "qlib_prefect"


def _private_reaches(name: str, path: Path, tree: ast.Module) -> list[str]:
    mine = _package(name, path.name == "__init__.py")
    bad = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or not node.module or not node.module.startswith("qlib_prefect."):
            continue
        parts = node.module.split(".")
        target_pkg = ".".join(parts[:2])
        if target_pkg == mine or (len(parts) == 2 and not (PKG / parts[1]).is_dir()):
            continue  # own package, or a top-level module of the root package (errors, _version)
        if any(p.startswith("_") for p in parts[2:]):
            bad.append(f"{path.relative_to(PKG.parent)}:{node.lineno}: from {node.module} import ...")
        for alias in node.names:
            if alias.name.startswith("_"):
                bad.append(f"{path.relative_to(PKG.parent)}:{node.lineno}: imports {node.module}.{alias.name}")
    return bad


def test_no_package_imports_another_packages_private_modules_or_names() -> None:
    bad = [b for name, path, tree in _modules() for b in _private_reaches(name, path, tree)]
    assert not bad, "private reaches across packages:\n" + "\n".join(bad)


def test_the_private_reach_check_finds_a_reach() -> None:
    tree = ast.parse("from qlib_prefect.orchestration._flow import qlib_workflow\n"
                     "from qlib_prefect.data.cache import _load_frame\n")
    bad = _private_reaches("qlib_prefect.cli.run", PKG / "cli" / "run.py", tree)
    assert len(bad) == 2


def test_cli_uses_only_the_public_face_of_orchestration() -> None:
    import qlib_prefect.orchestration as orch

    for name, path, tree in _modules():
        if not name.startswith("qlib_prefect.cli"):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "qlib_prefect.orchestration":
                for alias in node.names:
                    assert alias.name in orch.__all__, f"{path.name}:{node.lineno}: {alias.name} not in __all__"
    for n in orch.__all__:  # and every public name resolves
        getattr(orch, n)


def test_models_are_fitted_and_records_built_only_by_the_pipeline_executor() -> None:
    """The task-config -> model -> records pipeline exists once (qlib_prefect.workflow.pipeline)."""
    callers = []
    for name, _path, tree in _modules():
        if name.startswith("qlib_prefect.model") or name == "qlib_prefect.workflow.pipeline":
            continue
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "fit"
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "model"):
                callers.append(f"{name}:{node.lineno} model.fit")
            if (isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None))
                    == "init_instance_by_config"
                    and any(isinstance(a, ast.Name) and a.id == "RECORD_MODULE" for a in node.args)):
                callers.append(f"{name}:{node.lineno} builds records")
    assert callers == [], callers


def test_test_file_basenames_are_unique() -> None:
    """Test folders have no ``__init__.py`` (pytest's rootdir-less import): two files with one basename clash."""
    tests = Path(__file__).resolve().parent
    names = [p.name for p in tests.rglob("test_*.py") if "golden" not in p.parts]
    assert sorted({n for n in names if names.count(n) > 1}) == []
