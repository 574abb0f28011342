"""Provenance in manifests: the code version names olmoflow's own commit, never a surrounding repo's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import olmoflow

SRC = Path(olmoflow.__file__).resolve().parent


def _git(*args: str, cwd: Path) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t")
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def _code_version(site: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(site))
    code = ("import json, olmoflow; from olmoflow.flow.env import code_version; "
            f"assert olmoflow.__file__.startswith({str(site)!r}); print(json.dumps(code_version()))")
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True,
                         timeout=60).stdout
    return json.loads(out)


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_installed_package_inside_another_git_repo_records_no_commit(tmp_path):
    """olmoflow installed in a (git-ignored) venv inside the user's project is not that project's commit."""
    proj = tmp_path / "proj"
    proj.mkdir()
    _git("init", "-q", cwd=proj)
    (proj / ".gitignore").write_text(".venv/\n")
    _git("add", ".gitignore", cwd=proj)
    _git("commit", "-qm", "user project", cwd=proj)
    site = proj / ".venv" / "site"
    shutil.copytree(SRC, site / "olmoflow", ignore=shutil.ignore_patterns("__pycache__"))
    v = _code_version(site)
    assert v["version"] == olmoflow.__version__
    assert v["git_commit"] is None and v["git_dirty"] is None

    # a real checkout of olmoflow (the package tracked in the repo) does record its commit
    _git("add", "-f", ".venv/site/olmoflow", cwd=proj)
    _git("commit", "-qm", "vendored", cwd=proj)
    head = _git("rev-parse", "HEAD", cwd=proj).strip()
    v = _code_version(site)
    assert v["git_commit"] == head and v["git_dirty"] is False
