"""Run lineage: uncommitted code, command line, package version, git commit, config hash.

Every run started by :class:`~qlib_prefect.workflow.recorder.MLflowRecorder` gets

* artifacts ``code_diff.txt``, ``code_status.txt``, ``code_cached.txt`` (``git diff``, ``git status``,
  ``git diff --cached`` of the CWD) when the CWD is inside a git work tree - silently skipped otherwise;
* param ``cmd-sys.argv`` and one param per ``_QLIB_*`` environment variable (as qlib does);
* tags ``qlib_prefect.version``, ``mlflow.source.git.commit`` (in a repo), ``mlflow.user``, ``mlflow.source.name``,
  ``mlflow.source.type`` and ``qlib_prefect.config_hash`` when a config is known (:func:`config_hash`).

Example:
    >>> config_hash({"b": 1, "a": [1, 2]}) == config_hash({"a": [1, 2], "b": 1})
    True
"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from qlib_prefect.config.hashing import config_hash

__all__ = ["CONFIG_HASH_TAG", "VERSION_TAG", "GitState", "config_hash", "git_state", "run_params", "run_tags"]

CONFIG_HASH_TAG = "qlib_prefect.config_hash"
VERSION_TAG = "qlib_prefect.version"
GIT_COMMIT_TAG = "mlflow.source.git.commit"

_CODE_FILES = (
    (("diff",), "code_diff.txt"),
    (("status",), "code_status.txt"),
    (("diff", "--cached"), "code_cached.txt"),
)


class GitState:
    """Commit and the three ``code_*.txt`` texts of a git work tree (empty when not in a repo)."""

    def __init__(self, *, commit: str | None = None, files: dict[str, str] | None = None) -> None:
        self.commit = commit
        self.files = files or {}


def _git(args: tuple[str, ...], cwd: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, timeout=30, check=False, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.decode("utf-8", errors="replace")


_not_a_repo: set[str] = set()  # folders already found to be outside any git work tree (checked once per process)


def git_state(cwd: str | os.PathLike | None = None) -> GitState:
    """Read the git state of ``cwd`` (default: the process CWD). No git / not a repo -> empty state, no output."""
    if shutil.which("git") is None:
        return GitState()
    where = Path(cwd or os.getcwd())
    if str(where) in _not_a_repo:
        return GitState()
    inside = _git(("rev-parse", "--is-inside-work-tree"), where)
    if inside is None or inside.strip() != "true":
        _not_a_repo.add(str(where))
        return GitState()
    commit = _git(("rev-parse", "HEAD"), where)
    files = {}
    for args, name in _CODE_FILES:
        text = _git(args, where)
        if text is not None:
            files[name] = text
    return GitState(commit=commit.strip() if commit else None, files=files)


def run_params() -> dict[str, str]:
    """qlib's automatic params: ``cmd-sys.argv`` and every ``_QLIB_*`` environment variable."""
    params = {"cmd-sys.argv": " ".join(sys.argv)}
    from qlib_prefect.config.settings import lineage_environment

    params.update(lineage_environment())
    return params


def run_tags(git: GitState, config: Any = None) -> dict[str, str]:
    """System tags for a new run."""
    from qlib_prefect._version import __version__

    try:
        user = getpass.getuser()
    except Exception:  # pragma: no cover - no user database
        user = "unknown"
    tags = {
        VERSION_TAG: __version__,
        "mlflow.user": user,
        "mlflow.source.name": sys.argv[0] if sys.argv and sys.argv[0] else "<interactive>",
        "mlflow.source.type": "LOCAL",
    }
    if git.commit:
        tags[GIT_COMMIT_TAG] = git.commit
    if config is not None:
        tags[CONFIG_HASH_TAG] = config_hash(config)
    return tags
