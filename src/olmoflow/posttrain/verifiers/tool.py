"""Tool calls: the response must call the record's expected function (``call``: ``{"name", "arguments"}``)
in the OLMo 3 ``<function_calls>`` format; half credit for the right function with other arguments."""

from __future__ import annotations

import json

from olmoflow.posttrain.verifiers import register


def _norm(args) -> str:
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except json.JSONDecodeError:
            return args.strip()
    return json.dumps(args, sort_keys=True)


@register("tool", requires="call")
def score(record, response):
    from olmoflow.tokenizer.chat import parse_function_calls

    want = record["call"]
    _, calls = parse_function_calls(response)
    if not calls:
        return 0.0, "no function call"
    got = calls[0].get("function", calls[0])
    if got.get("name") != want.get("name"):
        return 0.0, f"called {got.get('name')!r}, expected {want.get('name')!r}"
    if _norm(got.get("arguments", {})) != _norm(want.get("arguments", {})):
        return 0.5, f"right function, arguments {got.get('arguments')!r} instead of {want.get('arguments')!r}"
    return 1.0, "correct call"
