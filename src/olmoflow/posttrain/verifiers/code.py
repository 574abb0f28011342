"""Code by tests in the sandbox: all must pass; timeouts, crashes and forks score 0.

Record fields: ``tests`` (test code defining ``check(candidate)`` or asserting on ``entry_point``),
``entry_point`` (the function name), optional ``prompt_code`` (code the completion continues, e.g. a
HumanEval prompt) and ``timeout_s``. The program is the response's last fenced code block (or the
whole response), after ``prompt_code``."""

from __future__ import annotations

import re

from olmoflow.errors import OlmoflowError
from olmoflow.posttrain.verifiers import register

_FENCE = re.compile(r"```(?:python|py)?\n(.*?)```", re.DOTALL)


def program_of(response: str) -> str:
    blocks = _FENCE.findall(response)
    return blocks[-1] if blocks else response


@register("code", requires="tests")
def score(record, response):
    from olmoflow.scoring.code import check_function

    if "entry_point" not in record:
        raise OlmoflowError(f"verifier 'code': record {record.get('id', '?')} has no field 'entry_point'")
    program = record.get("prompt_code", "") + program_of(response)
    res = check_function(program, record["entry_point"], record["tests"], context=record.get("prompt_code", ""),
                         timeout_s=float(record.get("timeout_s", 10.0)))
    return (1.0, "all tests passed") if res.passed else (0.0, f"{res.reason}: {res.detail}".strip(": "))
