"""The one progress bar of every long task (training, data pipelines, tokenizer training, evaluation).

Rich, with the task's description, a bar, the count done (or bytes and rate with ``transfer``), the
unit, any live fields the task updates (``fields``: rich format strings such as
``"loss {task.fields[loss]}"``), elapsed time and ETA. ``quiet`` draws nothing; ``stderr`` keeps
stdout for a command's results.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

__all__ = ["PLAIN_WIDTH", "make_console", "progress_bar"]

#: columns of rich output that does not go to a terminal (a log file, a pipe, CI): rich's default of
#: 80 would cut tables and paths; ``$COLUMNS``, when set, still wins
PLAIN_WIDTH = 200


def make_console(stderr: bool = False, quiet: bool = False, **kwargs: Any) -> Any:
    """The rich ``Console`` every command prints tables and lines through: as rich makes it on a
    terminal, and ``PLAIN_WIDTH`` columns wide (not 80) when the output is not a terminal."""
    from rich.console import Console

    c = Console(stderr=stderr, quiet=quiet, **kwargs)
    if not c.is_terminal and "width" not in kwargs and not os.environ.get("COLUMNS"):
        c = Console(stderr=stderr, quiet=quiet, width=PLAIN_WIDTH, **kwargs)
    return c


def progress_bar(quiet: bool = False, unit: str = "", fields: Sequence[str] = (), stderr: bool = True,
                 transfer: bool = False, elapsed: bool = False, console: Any = None) -> Any:
    """A ``rich.progress.Progress`` (a context manager; ``add_task``/``update``/``advance``).
    ``console``: print other lines through this rich Console while the bar is live (they appear above it)."""
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
        console = make_console(stderr=stderr, quiet=quiet)
    return Progress(*columns, console=console, disable=quiet)
