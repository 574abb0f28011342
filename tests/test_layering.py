"""Packages import one way: eval (and the shared io/artifacts helpers) never pull in the flow."""

from __future__ import annotations

import subprocess
import sys


def test_eval_does_not_import_flow(tmp_path):
    """Not at import time, nor when it records a model's provenance (which artifact it lies in)."""
    code = ("import sys, olmoflow.io, olmoflow.artifacts, olmoflow.eval.evaluator, olmoflow.eval.sweep, "
            f"olmoflow.eval.callback, olmoflow.eval.cli; olmoflow.eval.evaluator.model_provenance({str(tmp_path)!r}); "
            "print(sorted(m for m in sys.modules if m.startswith('olmoflow.flow')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_io_imports_only_the_standard_library():
    code = ("import sys; before = set(sys.modules); import olmoflow.io; "
            "print(sorted(m for m in set(sys.modules) - before if m.split('.')[0] in "
            "('torch', 'numpy', 'pydantic', 'yaml', 'rich')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
