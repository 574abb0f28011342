"""Provenance recorded in every manifest: code version and runtime environment."""

from __future__ import annotations

import functools
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

import olmoflow

__all__ = ["code_version", "environment", "library_versions"]


@functools.lru_cache(maxsize=1)
def code_version() -> dict[str, Any]:
    """``{"version", "git_commit", "git_dirty"}`` of the olmoflow source (git fields None if not a checkout)."""
    out: dict[str, Any] = {"version": olmoflow.__version__, "git_commit": None, "git_dirty": None}
    src = Path(olmoflow.__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10)
        # only a checkout of olmoflow itself: a package installed (untracked) under some other
        # repository, e.g. a venv inside the user's project, must not record that project's commit
        tracked = subprocess.run(["git", "-C", str(src), "ls-files", "--error-unmatch", "__init__.py"],
                                 capture_output=True, text=True, timeout=10)
        if commit.returncode == 0 and tracked.returncode == 0:
            out["git_commit"] = commit.stdout.strip()
            status = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True, timeout=20)
            out["git_dirty"] = bool(status.stdout.strip()) if status.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def _version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def _device() -> str:
    """The accelerator a stage could have used; only asks torch if a stage already imported it."""
    torch = sys.modules.get("torch")
    if torch is None:
        return "cpu"
    try:
        if torch.cuda.is_available():
            return f"cuda ({torch.cuda.get_device_name(0)}) x{torch.cuda.device_count()}"
    except Exception:  # noqa: BLE001 - a broken CUDA setup must not break provenance
        pass
    return "cpu"


#: libraries whose versions decide artifact bytes (BPE merges, token shards, curation decisions,
#: weights); recorded in every manifest's environment, and the default of a stage type's ``libraries``
OUTPUT_LIBRARIES = ("torch", "numpy", "tokenizers", "safetensors", "transformers", "lingua-language-detector",
                    "rensa", "pydivsufsort", "xxhash", "fasttext-numpy2")


def library_versions(packages: Iterable[str]) -> dict[str, str | None]:
    """``{"olmoflow": version, package: installed version or None}``: what a stage's cache key
    includes, so that upgrading olmoflow or a library that shapes the output reruns the stage
    instead of reusing an artifact the new versions would not produce. ``"python"`` names the
    interpreter (e.g. for a stage that reads the standard library's sources)."""
    return {"olmoflow": olmoflow.__version__,
            **{pkg: platform.python_version() if pkg == "python" else _version(pkg) for pkg in sorted(set(packages))}}


def environment() -> dict[str, Any]:
    """Python, torch and the other libraries that shape outputs, platform, device, host, CPU count."""
    return {
        "python": platform.python_version(),
        **library_versions(OUTPUT_LIBRARIES),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "device": _device(),
        "cpu_count": os.cpu_count(),
        "host": socket.gethostname(),
    }
