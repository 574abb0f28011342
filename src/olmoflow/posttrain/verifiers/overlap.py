"""Free-text answers (e.g. "what does this function do"): token F1 between the response and the
record's ``reference`` (or, for records that name a ``function``, its ``answer``), SQuAD-style."""

from __future__ import annotations

import re
from collections import Counter

from olmoflow.posttrain.verifiers import register

_WORD = re.compile(r"[a-z0-9]+")


def token_f1(pred: str, gold: str) -> float:
    p, g = _WORD.findall(pred.lower()), _WORD.findall(gold.lower())
    if not p or not g:
        return float(p == g)
    common = sum((Counter(p) & Counter(g)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


def _score(gold: str, response: str) -> tuple[float, str]:
    f1 = token_f1(response, gold)
    return f1, f"token F1 {f1:.2f} against the reference"


@register("overlap", requires="reference")
def score(record, response):
    return _score(str(record["reference"]), response)


@register("docstring", requires="function")
def docstring(record, response):
    return _score(str(record["answer"]), response)
