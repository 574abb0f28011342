"""Format: a ``<think>…</think>`` section followed by a non-empty answer (the Think models' structure)."""

from __future__ import annotations

import re

from olmoflow.posttrain.verifiers import register

_STRUCTURE = re.compile(r"^\s*<think>(.+?)</think>\s*(\S.*)$", re.DOTALL)


@register("format", requires="format")
def score(record, response):
    m = _STRUCTURE.match(response)
    if m is None:
        return 0.0, "expected <think>reasoning</think> then an answer"
    if "<think>" in m.group(2) or "</think>" in m.group(2):
        return 0.0, "more than one think section"
    return 1.0, "ok"
