"""Verifiers: ``score(record, response) -> (score in [0, 1], reason)`` for RLVR rewards and pair filtering.

A verifier reads what it needs from the prompt record (the gold ``answer``, the ``constraints``,
the ``tests``) and judges a model response (REFERENCE.md §4): math by final answer with symbolic
equivalence, code by running tests in the sandbox (all must pass), instruction following by
constraint checkers with partial credit, format by the think/answer structure. Which verifier
applies to a record: its ``verifier`` field, else the first registered verifier whose required
field the record has. Add one in a file of your own::

    from olmoflow.posttrain.verifiers import register

    @register("yes", requires="question")
    def yes(record, response):
        return (1.0, "ok") if "yes" in response.lower() else (0.0, "no 'yes'")

(a flow file can load it with ``plugins:``). Scores outside [0, 1] are refused with the verifier's
name and the record's id.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from olmoflow.errors import OlmoflowError

__all__ = ["VERIFIERS", "Verifier", "get_verifier", "register", "verifier_for", "verify"]

ScoreFn = Callable[[Mapping[str, Any], str], tuple[float, str]]


@dataclass(frozen=True)
class Verifier:
    name: str
    fn: ScoreFn
    #: the record field this verifier needs (its presence also selects the verifier)
    requires: str | None

    def __call__(self, record: Mapping[str, Any], response: str) -> tuple[float, str]:
        rid = record.get("id", "?")
        if self.requires and self.requires not in record:
            raise OlmoflowError(f"verifier {self.name!r}: record {rid} has no field {self.requires!r}")
        out = self.fn(record, response)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise OlmoflowError(f"verifier {self.name!r} returned {out!r:.80} for record {rid}; "
                                "expected (score, reason)")
        score, reason = out
        if not isinstance(score, int | float) or not 0.0 <= float(score) <= 1.0:
            raise OlmoflowError(f"verifier {self.name!r} returned score {score!r} for record {rid}; "
                                "scores must be in [0, 1]")
        return float(score), str(reason)


#: name -> Verifier, in registration order (the order ``verifier_for`` tries them)
VERIFIERS: dict[str, Verifier] = {}
# registration (= matching) order: specific fields first, the generic ``answer`` (math) last
_BUILTIN = ("tool", "overlap", "code", "ifeval", "format", "math")


def register(name: str, requires: str | None = None) -> Callable[[ScoreFn], ScoreFn]:
    """Register ``fn(record, response) -> (score, reason)`` under ``name``."""

    def deco(fn: ScoreFn) -> ScoreFn:
        VERIFIERS[name] = Verifier(name, fn, requires)
        return fn

    return deco


def _load_builtins() -> None:
    for mod in _BUILTIN:
        importlib.import_module(f"olmoflow.posttrain.verifiers.{mod}")


def get_verifier(name: str) -> Verifier:
    """The verifier called ``name``; a one-line error listing the known ones otherwise."""
    _load_builtins()
    if name not in VERIFIERS:
        raise OlmoflowError(f"unknown verifier {name!r} (known: {', '.join(sorted(VERIFIERS))})")
    return VERIFIERS[name]


def verifier_for(record: Mapping[str, Any]) -> Verifier | None:
    """The record's ``verifier`` by name, else the first whose required field it has, else None."""
    _load_builtins()
    if record.get("verifier"):
        return get_verifier(str(record["verifier"]))
    return next((v for v in VERIFIERS.values() if v.requires and v.requires in record), None)


def verify(record: Mapping[str, Any], response: str) -> tuple[float | None, str]:
    """Score ``response`` with the verifier that applies to ``record``; ``(None, reason)`` if none does."""
    v = verifier_for(record)
    if v is None:
        return None, "no verifier applies"
    return v(record, response)
