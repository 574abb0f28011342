"""Math by final answer: the last ``\\boxed{}`` outside code, else the last number; equality through the
evaluation package's answer normalisation and sympy comparison (one implementation, shared with eval)."""

from __future__ import annotations

import re

from olmoflow.posttrain.verifiers import register
from olmoflow.scoring.answers import extract_boxed, extract_last_number
from olmoflow.scoring.math import math_equal

_CODE = re.compile(r"```.*?(?:```|$)|`[^`\n]*`", re.DOTALL)
_THINK = re.compile(r"<think>.*?(?:</think>|$)", re.DOTALL)


def final_answer(response: str) -> str | None:
    """What a response answers: reasoning (``<think>``) and code are not the answer; then the last
    ``\\boxed{}`` or, without one, the last number."""
    text = _CODE.sub(" ", _THINK.sub(" ", response))
    boxed = extract_boxed(text)
    return boxed if boxed is not None else extract_last_number(text)


@register("math", requires="answer")
def score(record, response):
    pred = final_answer(response)
    if pred is None:
        return 0.0, "no final answer"
    gold = str(record["answer"])
    return (1.0, "correct") if math_equal(pred, gold) else (0.0, f"answered {pred!r}, expected {gold!r}")
