"""Long-context documents: the gzip-compressibility filter drops the top and bottom fractions,
related documents are joined, synthetic documents carry their retrieval target."""

from __future__ import annotations

import random

import pytest

from olmoflow.data.long_context import (
    build_long_documents,
    compressibility_filter,
    concatenate_related,
    gzip_ratio,
    synthetic_documents,
)
from olmoflow.errors import OlmoflowError
from olmoflow.io import read_jsonl


def _docs(n: int = 50) -> list[dict]:
    rng = random.Random(0)
    out = []
    for i in range(n):  # from pure repetition (compresses best) to random letters (worst)
        rep = "abc " * (400 - 8 * i)
        noise = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(40 * i))
        out.append({"id": f"d{i:02d}", "text": rep + noise})
    return out


def test_filter_drops_the_most_and_least_compressible_fifths():
    docs = _docs()
    ratios = sorted(gzip_ratio(d["text"]) for d in docs)
    kept, dropped = compressibility_filter(docs, 0.2, 0.2)
    assert len(kept) == 30 and len(dropped) == 20
    kr = [gzip_ratio(d["text"]) for d in kept]
    assert min(kr) == ratios[10] and max(kr) == ratios[39]
    assert {d["reason"] for d in dropped} == {"most compressible", "least compressible"}
    assert sum(d["reason"] == "most compressible" for d in dropped) == 10
    with pytest.raises(OlmoflowError, match="drop_low=0.6, drop_high=0.5"):
        compressibility_filter(docs, 0.6, 0.5)


def test_related_documents_are_joined_by_id_prefix():
    docs = [{"id": f"code/json/{n}.py", "text": "x" * 300} for n in ("a", "b", "c")]
    docs += [{"id": "code/csv.py", "text": "y" * 300}, {"id": "prose/topic/t", "text": "z" * 100}]
    out = concatenate_related(docs, min_chars=500, max_chars=5000)
    assert [d["id"] for d in out] == ["long/code/json/0"]  # csv (300 chars) and prose are too short
    assert out[0]["text"] == "\n\n".join(["x" * 300] * 3) and out[0]["source"] == "long"


def test_synthetic_documents_end_with_their_answer(tmp_path):
    docs = synthetic_documents(8, [200, 400], seed=0)
    assert {d["metadata"]["task"] for d in docs} == {"passkey", "niah_multikey", "variable_tracking", "common_words"}
    pk = next(d for d in docs if d["metadata"]["task"] == "passkey")
    key = pk["text"].split("The pass key is ")[1][:5]
    assert pk["text"].endswith(f"The pass key is {key}.")
    stats = build_long_documents(_docs(), tmp_path, min_chars=10, max_chars=100000, n_synthetic=4,
                                 synthetic_lengths=[100])
    assert stats["synthetic"] == 4 and len(read_jsonl(tmp_path / "synthetic.jsonl")) == 4
    assert stats["dropped"] == len(read_jsonl(tmp_path / "dropped.jsonl"))


@pytest.mark.parametrize("trace", ["direct", "columns"])
def test_dolmino_worked_solutions_are_correct_and_exclude_eval_problems(tmp_path, trace):
    import re

    from olmoflow.data.dolmino import build_dolmino
    from olmoflow.io import write_jsonl

    ev = tmp_path / "eval.jsonl"
    write_jsonl(ev, [{"id": "e0", "question": "Ava has 3 apples. A friend gives Ava 4 more apples. How many apples "
                                              "does Ava have now?", "answer": "7"}])
    counts = build_dolmino(tmp_path / "d", n_math=400, exclude_eval=ev, n_retrieval=4, retrieval_length=64,
                           trace=trace)
    assert counts == {"math_worked": 400, "retrieval": 4}
    docs = read_jsonl(tmp_path / "d" / "math_worked.jsonl")
    for d in docs:
        assert "Ava has 3 apples." not in d["text"]
        equations = re.findall(r"((?:\d+ [-+*/] )+\d+) = (\d+)", d["text"])
        assert equations, d["text"]
        for lhs, value in equations:
            assert eval(lhs.replace("/", "//")) == int(value), d["text"]
        assert d["text"].endswith(f"The answer is {d['metadata']['answer']}.")
        if trace == "columns":
            # every sum / difference is worked column by column: single digits (a carried or borrowed 1
            # and a borrowed ten aside) on the left, then the value the columns spell
            for a, op, b, cols, value in re.findall(r"(\d+) ([-+]) (\d+): ((?:\d+(?: [-+] \d+)+ = \d+\. )+)So (\d+)\.",
                                                     d["text"]):
                assert eval(f"{a} {op} {b}") == int(value), d["text"]
                digits = [int(re.findall(r"\d+", c.split("=")[0])[0]) % 10 for c in cols.split(". ") if c]
                assert len(digits) == len(str(max(int(a), int(b)))), d["text"]
                last = [c.split("= ")[1].rstrip(".") for c in cols.split(". ") if c]
                spelled = int(last[-1] + "".join(x[-1] for x in reversed(last[:-1])))
                assert spelled == int(value), d["text"]
        else:
            assert ":" not in d["text"].split("Answer:")[1], d["text"]
    assert len({d["metadata"]["template"] for d in docs}) == 8
    if trace == "columns":
        assert sum(": " in d["text"].split("Answer:")[1] for d in docs) >= 400 * 5 / 8 - 1
