"""The one progress bar of every long task (training, data pipelines, tokenizer training, evaluation).

Rich, with the task's description, a bar, the count done (or bytes and rate with ``transfer``), the
unit, any live fields the task updates (``fields``: rich format strings such as
``"loss {task.fields[loss]}"``), elapsed time and ETA. ``quiet`` draws nothing; ``stderr`` keeps
stdout for a command's results.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["progress_bar"]


def progress_bar(quiet: bool = False, unit: str = "", fields: Sequence[str] = (), stderr: bool = True,
                 transfer: bool = False, elapsed: bool = False, console: Any = None) -> Any:
    """A ``rich.progress.Progress`` (a context manager; ``add_task``/``update``/``advance``).
    ``console``: print other lines through this rich Console while the bar is live (they appear above it)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns: list[Any] = [TextColumn("[bold]{task.description}"), BarColumn()]
    columns += [DownloadColumn(), TransferSpeedColumn()] if transfer else [MofNCompleteColumn()]
    if unit:
        columns.append(TextColumn(unit))
    columns += [TextColumn(f) for f in fields]
    if elapsed:
        columns.append(TimeElapsedColumn())
    columns += [TextColumn("ETA"), TimeRemainingColumn()]
    if console is None:
        console = Console(stderr=True, quiet=quiet) if stderr else Console(quiet=quiet)
    return Progress(*columns, console=console, disable=quiet)
