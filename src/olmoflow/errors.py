"""Errors a user can act on. The CLI prints them as one line, without a traceback."""

from __future__ import annotations


class OlmoflowError(Exception):
    """Base class for user-facing errors (bad input, bad config, missing files)."""


class MissingExtraError(OlmoflowError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""


def require(module: str, extra: str):
    """Import ``module`` or raise MissingExtraError naming ``pip install 'olmoflow[extra]'``."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingExtraError(
            f"{module} is not installed ({e}); install it with: pip install 'olmoflow[{extra}]'"
        ) from None
