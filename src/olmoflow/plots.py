"""Plot setup, once: every figure olmoflow writes (report card, curation report, eval sweeps) is
drawn with matplotlib's file-only Agg backend and saved without a software stamp, so its bytes
depend only on the data. matplotlib is a core dependency, but a missing one degrades to no plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["pyplot", "save_figure"]


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend, or None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def save_figure(fig: Any, path: str | Path, dpi: int | None = None) -> Path:
    """Write ``fig`` to ``path`` (parents created, no software stamp) and free it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Software": None}, **({"dpi": dpi} if dpi else {}))
    plt.close(fig)
    return path
