"""Instruction-following checkers: is a response written the way the prompt asked?

A constraint is a dict with a ``type`` and that type's parameters, e.g.
``{"type": "word_count", "relation": "exactly", "n": 12}``. :func:`check` scores a response against
a list of constraints (fraction satisfied, so partial credit) and says why each failed one failed;
:func:`describe` renders a constraint as the instruction a prompt states, so the text a model reads
and the check it is scored by come from one place. Used by the offline chat data
(``olmoflow.posttrain.synth``), SFT evaluation, the DPO pair builder and the RLVR verifier.

Constraint types (:data:`CHECKERS`, :data:`DESCRIPTIONS`):

=================  ===============================  ==================================================
type               parameters                       satisfied when
=================  ===============================  ==================================================
word_count         relation, n                      the number of words is exactly / at most / at
                                                    least ``n`` (a word: letters or digits, with inner
                                                    ``'`` or ``-`` allowed: "don't", "well-known";
                                                    a number such as "3.5" is one word)
sentence_count     relation, n                      same for sentences (text ending at ``.``, ``!``,
                                                    ``?`` or the end, holding at least one word)
keywords_present   keywords (list of str)           every keyword appears as a whole word or phrase,
                                                    case-insensitively
keywords_absent    keywords (list of str)           none of them appears (same matching)
lowercase          (none)                           at least one letter and no uppercase letter
uppercase          (none)                           at least one letter and no lowercase letter
json_keys          keys (list of str)               the response is a JSON object (optionally inside
                                                    one fenced code block) with every key at top level
starts_with        text                             the response, leading whitespace removed, starts
                                                    with ``text`` (case-sensitive)
ends_with          text                             the response, trailing whitespace removed, ends
                                                    with ``text`` (case-sensitive)
=================  ===============================  ==================================================

``relation`` is one of ``exactly``, ``at_most``, ``at_least``. A new checker is one function
``(response, constraint) -> (ok, why)`` added to :data:`CHECKERS` (and a line to
:data:`DESCRIPTIONS` if prompts should state it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from olmoflow.errors import OlmoflowError

__all__ = ["CHECKERS", "DESCRIPTIONS", "RELATIONS", "check", "check_one", "count_sentences", "count_words",
           "describe"]

RELATIONS = ("exactly", "at_most", "at_least")

_WORD = re.compile(r"[^\W_]+(?:(?:['’-]|(?<=\d)[.,](?=\d))[^\W_]+)*")
_SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)")
_FENCE = re.compile(r"^```[ \t]*(?:json|JSON)?[ \t]*\n(.*?)\n?```$", re.DOTALL)

Checker = Callable[[str, Mapping[str, Any]], tuple[bool, str]]


# ------------------------------------------------------------------------------------- helpers
def count_words(text: str) -> int:
    """Words in ``text``: runs of letters/digits, joined by inner apostrophes or hyphens ("don't",
    "well-known") and numbers by inner points or commas ("3.5", "1,000")."""
    return len(_WORD.findall(text))


def count_sentences(text: str) -> int:
    """Sentences in ``text``: pieces ending at ``.``/``!``/``?`` (followed by space or the end) or
    at the end of the text, that hold at least one word. "3.5" does not end one; an abbreviation
    followed by a space ("e.g. this") does: no abbreviation list, so counts are predictable."""
    return sum(1 for piece in _SENTENCE_END.split(text) if _WORD.search(piece))


def _param(c: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    """Parameter ``key`` of constraint ``c``; OlmoflowError naming the constraint if missing/mistyped."""
    value = c.get(key)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        name = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise OlmoflowError(f"constraint {dict(c)!r}: parameter '{key}' must be a {name}, got {value!r}")
    return value


def _count_param(c: Mapping[str, Any]) -> tuple[str, int]:
    relation = c.get("relation", "exactly")
    if relation not in RELATIONS:
        raise OlmoflowError(f"constraint {dict(c)!r}: 'relation' must be one of {', '.join(RELATIONS)}")
    n = _param(c, "n", int)
    if n < 0:
        raise OlmoflowError(f"constraint {dict(c)!r}: 'n' must be >= 0")
    return relation, n


def _strings(c: Mapping[str, Any], key: str) -> list[str]:
    values = _param(c, key, (list, tuple))
    if not values or not all(isinstance(v, str) and v.strip() for v in values):
        raise OlmoflowError(f"constraint {dict(c)!r}: '{key}' must be a non-empty list of non-empty strings")
    return list(values)


def _compare(count: int, relation: str, n: int) -> bool:
    return count == n if relation == "exactly" else count <= n if relation == "at_most" else count >= n


def _contains(text: str, phrase: str) -> bool:
    """``phrase`` occurs in ``text`` as whole words (case-insensitive, any whitespace between words)."""
    pattern = r"\s+".join(re.escape(w) for w in phrase.split())
    return re.search(rf"(?<![^\W_]){pattern}(?![^\W_])", text, re.IGNORECASE) is not None


# ------------------------------------------------------------------------------------ checkers
def _word_count(response: str, c: Mapping[str, Any]) -> tuple[bool, str]:
    relation, n = _count_param(c)
    got = count_words(response)
    return _compare(got, relation, n), f"{got} words, expected {relation.replace('_', ' ')} {n}"


def _sentence_count(response: str, c: Mapping[str, Any]) -> tuple[bool, str]:
    relation, n = _count_param(c)
    got = count_sentences(response)
    return _compare(got, relation, n), f"{got} sentences, expected {relation.replace('_', ' ')} {n}"


def _keywords_present(response: str, c: Mapping[str, Any]) -> tuple[bool, str]:
    missing = [k for k in _strings(c, "keywords") if not _contains(response, k)]
    return not missing, f"missing keywords {missing}"


def _keywords_absent(response: str, c: Mapping[str, Any]) -> tuple[bool, str]:
    found = [k for k in _strings(c, "keywords") if _contains(response, k)]
    return not found, f"forbidden keywords present {found}"


def _lowercase(response: str, c: Mapping[str, Any]) -> tuple[bool, str]:
    upper = [ch for ch in response if ch.isupper()]
    if not any(ch.islower() for ch in response):
        return False, "no lowercase letter at all"
    return not upper, f"uppercase letters {''.join(upper[:10])!r}"


def _uppercase(response: str, c: Mapping[str, Any]) -> tuple[bool, str]:
    lower = [ch for ch in response if ch.islower()]
    if not any(ch.isupper() for ch in response):
        return False, "no uppercase letter at all"
    return not lower, f"lowercase letters {''.join(lower[:10])!r}"


def _json_keys(response: str, c: Mapping[str, Any]) -> tuple[bool, str]:
    keys = _strings(c, "keys")
    text = response.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    try:
        obj = json.loads(text)
    except ValueError as e:
        return False, f"not JSON ({e.msg if isinstance(e, json.JSONDecodeError) else e})"
    if not isinstance(obj, dict):
        return False, f"JSON {type(obj).__name__}, not an object"
    missing = [k for k in keys if k not in obj]
    return not missing, f"JSON object misses keys {missing}"


def _starts_with(response: str, c: Mapping[str, Any]) -> tuple[bool, str]:
    text = _param(c, "text", str)
    return response.lstrip().startswith(text), f"does not start with {text!r}"


def _ends_with(response: str, c: Mapping[str, Any]) -> tuple[bool, str]:
    text = _param(c, "text", str)
    return response.rstrip().endswith(text), f"does not end with {text!r}"


#: constraint type -> checker; a new constraint type is one function added here
CHECKERS: dict[str, Checker] = {
    "word_count": _word_count,
    "sentence_count": _sentence_count,
    "keywords_present": _keywords_present,
    "keywords_absent": _keywords_absent,
    "lowercase": _lowercase,
    "uppercase": _uppercase,
    "json_keys": _json_keys,
    "starts_with": _starts_with,
    "ends_with": _ends_with,
}

_REL_TEXT = {"exactly": "exactly", "at_most": "at most", "at_least": "at least"}


def _quoted(items: Sequence[str]) -> str:
    return ", ".join(f'"{k}"' for k in items)


#: constraint type -> the instruction a prompt states for it
DESCRIPTIONS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "word_count": lambda c: f"Use {_REL_TEXT[c.get('relation', 'exactly')]} {c['n']} words.",
    "sentence_count": lambda c: f"Write {_REL_TEXT[c.get('relation', 'exactly')]} {c['n']} sentences.",
    "keywords_present": lambda c: f"Include the words {_quoted(c['keywords'])}.",
    "keywords_absent": lambda c: f"Avoid the words {_quoted(c['keywords'])}.",
    "lowercase": lambda c: "Use only lowercase letters.",
    "uppercase": lambda c: "Use only capital letters.",
    "json_keys": lambda c: f"Reply in JSON with keys {_quoted(c['keys'])}.",
    "starts_with": lambda c: f'Begin with "{c["text"]}".',
    "ends_with": lambda c: f'End with "{c["text"]}".',
}


# ---------------------------------------------------------------------------------- public API
def _checker(constraint: Any) -> Checker:
    if not isinstance(constraint, Mapping):
        raise OlmoflowError(f"constraint {constraint!r:.80}: expected a mapping with a 'type'")
    kind = constraint.get("type")
    if kind not in CHECKERS:
        raise OlmoflowError(f"unknown constraint type {kind!r} (known: {', '.join(sorted(CHECKERS))})")
    return CHECKERS[kind]


def check_one(response: str, constraint: Mapping[str, Any]) -> tuple[bool, str]:
    """(satisfied, why not) for one constraint; OlmoflowError for an unknown type or bad parameters."""
    checker = _checker(constraint)
    if not isinstance(response, str):
        raise OlmoflowError(f"response must be a string, got {type(response).__name__}")
    return checker(response, constraint)


def check(response: str, constraints: Sequence[Mapping[str, Any]]) -> tuple[float, list[str]]:
    """Score ``response`` against ``constraints``: (fraction satisfied in [0, 1], reasons).

    ``reasons`` has one line per unsatisfied constraint (``"word_count: 9 words, expected exactly
    12"``); empty when the score is 1. Every constraint's type and parameters are validated
    whatever the response, so a bad spec fails on the first call, not on an unlucky one.
    """
    if isinstance(constraints, Mapping) or not isinstance(constraints, Sequence) or not constraints:
        raise OlmoflowError(f"constraints must be a non-empty list, got {constraints!r:.80}")
    for c in constraints:
        _checker(c)
    results = [(c["type"], *check_one(response, c)) for c in constraints]
    reasons = [f"{kind}: {why}" for kind, ok, why in results if not ok]
    return sum(ok for _, ok, _ in results) / len(results), reasons


def describe(constraint: Mapping[str, Any]) -> str:
    """The instruction for ``constraint`` as a prompt states it (e.g. "Answer in exactly 12 words.")."""
    check_one("", constraint)  # validates the type and parameters
    kind = constraint["type"]
    if kind not in DESCRIPTIONS:
        raise OlmoflowError(f"constraint type {kind!r} has no description (add one to DESCRIPTIONS)")
    return DESCRIPTIONS[kind](constraint)
