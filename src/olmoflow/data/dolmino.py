"""A Dolmino-like midtraining mix for the demo flows (REFERENCE.md §3, OLMo 3 midtraining).

OLMo 3 anneals on a hand-built mix: math with worked solutions, code, question-answer formatted
text, instruction / chat data and the best web text. At demo scale this module writes, from what
the flow already has:

* ``math_worked``: fresh TinyMATH-style word problems (the demo corpus's templates, problems of the
  held-out eval file excluded) with step-by-step worked solutions ending ``The answer is N.``;
* ``chat``: conversations (a chat_data ``sft.jsonl``) rendered with the chat template;
* ``retrieval``: short synthetic documents with a retrieval target (pass keys, keyed numbers; the
  RULER generators at the pretraining context), so the base model knows the task format before
  its context is extended.

Each is a Dolma JSONL file of its own source; tokenize them and mix them next to the pretraining
data with a ``midtrain`` stage.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

from olmoflow.data.demo import CREATED, column_steps, math_problems
from olmoflow.io import read_jsonl, write_jsonl

__all__ = ["TRACES", "build_dolmino", "worked_solution"]


#: how a worked solution does a sum or difference: in one step (``47 + 58 = 105.``) or column by
#: column from the ones (``47 + 58: 7 + 8 = 15. 4 + 5 + 1 = 10. So 105.``: single-digit facts
#: with a carry, which a tiny model with a digit-splitting tokenizer can learn; products and
#: quotients always take one step)
TRACES = ("direct", "columns")


def _sum(a: int, b: int, sign: int, trace: str) -> str:
    op, value = ("+", a + b) if sign > 0 else ("-", a - b)
    if trace == "direct":
        return f"{a} {op} {b} = {value}."
    steps = " ".join(f"{s}." for s in column_steps(a, b, sign))
    return f"{a} {op} {b}: {steps} So {value}."


def worked_solution(question: str, answer: str, template: str, trace: str = "direct") -> str:
    """The steps that lead to ``answer`` for a demo-corpus problem (numbers read from the question)."""
    if trace not in TRACES:
        raise ValueError(f"trace must be one of {TRACES}, not {trace!r}")
    n = [int(x) for x in re.findall(r"\d+", question)]
    if template == "add":
        steps = _sum(n[0], n[1], 1, trace)
    elif template == "sub":
        steps = _sum(n[0], n[1], -1, trace)
    elif template == "mul":
        steps = f"{n[0]} * {n[1]} = {n[0] * n[1]}."
    elif template == "div":
        steps = f"{n[0]} / {n[1]} = {n[0] // n[1]}."
    elif template == "two_step":
        qty, price, paid = n
        steps = f"{qty} * {price} = {qty * price}. {_sum(paid, qty * price, -1, trace)}"
    elif template == "rect":
        s = n[0] + n[1]
        steps = f"{_sum(n[0], n[1], 1, trace)} {_sum(s, s, 1, trace)}"  # twice the sum of the sides
    elif template == "age":
        steps = f"{_sum(n[0], n[1], 1, trace)} {_sum(n[0] + n[1], 5, 1, trace)}"
    elif template == "arith":
        steps = f"{n[0]} * {n[1]} = {n[0] * n[1]}. {_sum(n[0] * n[1], n[2], 1, trace)}"
    else:
        steps = ""
    return f"Question: {question}\nAnswer: {steps} The answer is {answer}.".replace("  ", " ")


def build_dolmino(out_dir: str | Path, *, n_math: int, exclude_eval: str | Path | None = None,
                  chat: str | Path | None = None, n_chat: int = 0, n_retrieval: int = 0,
                  retrieval_length: int = 128, retrieval_tasks: list[str] | None = None, seed: int = 0,
                  count=None, trace: str = "direct") -> dict[str, Any]:
    """Write ``math_worked.jsonl``, ``chat.jsonl`` and ``retrieval.jsonl`` (those asked for) into
    ``out_dir``; returns documents per source."""
    from olmoflow.data.long_context import synthetic_documents
    from olmoflow.tokenizer.chat import apply_chat_template

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    exclude = {r["question"] for r in read_jsonl(exclude_eval)} if exclude_eval else set()
    probs = math_problems(n_math, seed + 7919, exclude=exclude)
    docs = {"math_worked": [{"id": f"math_worked/{i:06d}", "text": worked_solution(p["question"], p["answer"],
                                                                                  p["template"], trace),
                             "source": "math_worked", "added": CREATED, "created": CREATED,
                             "metadata": {"template": p["template"], "answer": p["answer"]}}
                            for i, p in enumerate(probs)]}
    if chat is not None and n_chat:
        convs = [r for r in read_jsonl(chat) if r.get("messages")]
        pick = random.Random(seed).sample(range(len(convs)), min(n_chat, len(convs)))
        docs["chat"] = [{"id": f"chat/{convs[i].get('id', i)}", "text": apply_chat_template(convs[i]["messages"],
                                                                                          convs[i].get("tools")),
                         "source": "chat", "added": CREATED, "created": CREATED} for i in sorted(pick)]
    if n_retrieval:
        docs["retrieval"] = [{**d, "id": d["id"].replace("synthetic/", "retrieval/"), "source": "retrieval"}
                             for d in synthetic_documents(n_retrieval, [retrieval_length], seed + 17,
                                                          retrieval_tasks, count)]
    for name, rows in docs.items():
        write_jsonl(out / f"{name}.jsonl", rows)
    return {name: len(rows) for name, rows in docs.items()}
