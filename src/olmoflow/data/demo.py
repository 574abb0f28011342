"""Offline demo corpus: Python stdlib source (code), Python docs text (prose), synthetic math.

Everything comes from the local Python install or is generated, so the tiny flow needs no network.
Math problems are TinyMATH-style: each template has many programmatic variations (numbers, names,
objects) and a verifiable integer answer; a held-out split with disjoint random draws is written
to ``math_eval.jsonl`` (fields ``id``, ``question``, ``answer``) for evaluation and decontamination.
"""

from __future__ import annotations

import ast
import inspect
import os
import random
import sysconfig
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from olmoflow.data.documents import write_jsonl

CREATED = "2024-01-01T00:00:00Z"
NAMES = ["Ava", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jamal", "Kira", "Luis",
         "Maya", "Noah", "Olga", "Priya", "Quinn", "Rosa", "Sam", "Tara", "Umar", "Vera", "Wen", "Yusuf"]
ITEMS = ["apples", "marbles", "stickers", "books", "pencils", "cookies", "stamps", "shells", "cards", "coins"]
SKIP_CODE_DIRS = {"test", "tests", "idlelib", "lib2to3", "site-packages", "ensurepip", "tkinter", "turtledemo"}


def _t_add(r: random.Random) -> tuple[str, int]:
    n, it = r.choice(NAMES), r.choice(ITEMS)
    a, b = r.randint(2, 99), r.randint(2, 99)
    return f"{n} has {a} {it}. A friend gives {n} {b} more {it}. How many {it} does {n} have now?", a + b


def _t_sub(r: random.Random) -> tuple[str, int]:
    n, it = r.choice(NAMES), r.choice(ITEMS)
    a = r.randint(20, 200)
    b = r.randint(1, a - 1)
    return f"{n} had {a} {it} and gave away {b} of them. How many {it} are left?", a - b


def _t_mul(r: random.Random) -> tuple[str, int]:
    n, it = r.choice(NAMES), r.choice(ITEMS)
    a, b = r.randint(2, 15), r.randint(2, 30)
    return f"{n} buys {a} boxes of {it}. Each box holds {b} {it}. How many {it} does {n} buy in total?", a * b


def _t_div(r: random.Random) -> tuple[str, int]:
    n, it = r.choice(NAMES), r.choice(ITEMS)
    k, q = r.randint(2, 12), r.randint(2, 25)
    return f"{n} shares {k * q} {it} equally among {k} friends. How many {it} does each friend get?", q


def _t_two_step(r: random.Random) -> tuple[str, int]:
    n = r.choice(NAMES)
    price, qty, paid = r.randint(2, 20), r.randint(2, 9), 0
    paid = price * qty + r.randint(1, 50)
    return (f"{n} buys {qty} notebooks that cost {price} dollars each and pays with {paid} dollars. "
            f"How much change does {n} get, in dollars?", paid - price * qty)


def _t_rect(r: random.Random) -> tuple[str, int]:
    w, h = r.randint(2, 40), r.randint(2, 40)
    return f"A rectangle is {w} meters wide and {h} meters long. What is its perimeter in meters?", 2 * (w + h)


def _t_age(r: random.Random) -> tuple[str, int]:
    a, b = r.sample(NAMES, 2)
    x, d = r.randint(5, 40), r.randint(1, 20)
    return f"{a} is {x} years old. {b} is {d} years older than {a}. How old will {b} be in 5 years?", x + d + 5


def _t_arith(r: random.Random) -> tuple[str, int]:
    a, b, c = r.randint(2, 50), r.randint(2, 20), r.randint(1, 99)
    return f"What is {a} times {b} plus {c}?", a * b + c


def column_steps(a: int, b: int, sign: int) -> list[str]:
    """``a ± b`` column by column from the ones: ``47 + 58`` -> ["7 + 8 = 15", "4 + 5 + 1 = 10"];
    ``63 - 28`` -> ["13 - 8 = 5", "6 - 2 - 1 = 3"] (a borrowed ten shows as the 1 before the
    digit, and is paid back in the next column). Result digits: the last digit of each step, from
    the last step back, with an addition's final carry in front (leading zeros dropped)."""
    steps, carry = [], 0
    for i in range(len(str(max(a, b)))):
        da, db = a // 10**i % 10, b // 10**i % 10
        if sign > 0:
            total = da + db + carry
            steps.append(f"{da} + {db}{' + 1' if carry else ''} = {total}")
            carry = total // 10
        else:
            top = da + (10 if da - carry < db else 0)
            steps.append(f"{top} - {db}{' - 1' if carry else ''} = {top - db - carry}")
            carry = int(top > da)
    return steps


TEMPLATES: list[Callable[[random.Random], tuple[str, int]]] = [
    _t_add, _t_sub, _t_mul, _t_div, _t_two_step, _t_rect, _t_age, _t_arith,
]


def math_problems(n: int, seed: int, exclude: set[str] | None = None) -> list[dict[str, Any]]:
    """``n`` distinct problems (question, answer, template) cycling through the templates."""
    r = random.Random(seed)
    out, seen = [], set(exclude or ())
    tries = 0
    while len(out) < n and tries < n * 50:
        tries += 1
        t = TEMPLATES[len(out) % len(TEMPLATES)]
        q, a = t(r)
        if q in seen:
            continue
        seen.add(q)
        out.append({"question": q, "answer": str(a), "template": t.__name__[3:]})
    return out


def _solution(p: dict[str, Any]) -> str:
    return f"Question: {p['question']}\nAnswer: The answer is {p['answer']}."


def _code_docs(limit: int | None, max_bytes: int) -> list[dict[str, Any]]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_CODE_DIRS and not d.startswith(("test", "_", ".")))
        for fn in sorted(filenames):
            if not fn.endswith(".py"):
                continue
            f = Path(dirpath) / fn
            try:
                size = f.stat().st_size
            except OSError:
                continue
            if 500 <= size <= max_bytes:
                files.append((f.relative_to(root), f))
    files.sort()
    docs = []
    for rel, f in files[: limit or None]:
        try:
            text = f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        docs.append({"id": f"code/{rel.as_posix()}", "text": text, "source": "code", "added": CREATED,
                     "created": CREATED, "metadata": {"path": rel.as_posix(), "language": "python"}})
    return docs


def _module_docstring(path: Path) -> str:
    """A module's docstring from its first tokens (no full parse, no import)."""
    import tokenize

    try:
        with open(path, "rb") as f:
            for tok in tokenize.tokenize(f.readline):
                if tok.type in (tokenize.ENCODING, tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE):
                    continue
                if tok.type != tokenize.STRING:
                    return ""
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    value = ast.literal_eval(tok.string)
                return inspect.cleandoc(value) if isinstance(value, str) else ""
    except (OSError, SyntaxError, ValueError, tokenize.TokenError):
        return ""
    return ""


def _prose_docs(limit: int | None) -> list[dict[str, Any]]:
    from pydoc_data.topics import topics

    docs = []
    for key in sorted(topics):
        docs.append({"id": f"prose/topic/{key}", "text": topics[key].strip(), "source": "prose",
                     "added": CREATED, "created": CREATED, "metadata": {"origin": "pydoc_data.topics"}})
    root = Path(sysconfig.get_paths()["stdlib"])
    for f in sorted(root.glob("*.py")) + sorted(root.glob("*/__init__.py")):
        name = f.stem if f.name != "__init__.py" else f.parent.name
        if name.startswith(("_", "test", "idlelib", "tkinter", "turtle", "antigravity", "this", "lib2to3")):
            continue
        if limit and len(docs) >= limit:
            break
        doc = _module_docstring(f)
        if len(doc) >= 200:
            docs.append({"id": f"prose/module/{name}", "text": doc.strip(), "source": "prose", "added": CREATED,
                         "created": CREATED, "metadata": {"origin": f"{name}.__doc__"}})
    return docs[: limit or None]


def build_demo_corpus(
    out_dir: str | Path,
    seed: int = 0,
    max_docs_per_source: int | None = None,
    n_math: int = 2000,
    n_math_eval: int = 200,
    max_code_file_bytes: int = 24_000,
    max_code_files: int = 250,
    plant_eval_items: int = 0,
) -> dict[str, Any]:
    """Write ``code.jsonl``, ``prose.jsonl``, ``math.jsonl`` and ``math_eval.jsonl`` into ``out_dir``.

    ``plant_eval_items`` > 0 contaminates the math source on purpose: that many evaluation items (question
    and answer) are written into ordinary math documents (ids ``math/planted-NNN``), so a flow can show that
    decontamination finds and removes them.

    Returns ``{"files": {source: path}, "docs": {source: n}, "bytes": {source: n}, "eval": path}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cap = max_docs_per_source
    code = _code_docs(min(cap, max_code_files) if cap else max_code_files, max_code_file_bytes)
    prose = _prose_docs(cap)
    n_train = min(cap, n_math) if cap else n_math
    evals = math_problems(n_math_eval, seed + 1)
    train = math_problems(n_train, seed, exclude={e["question"] for e in evals})
    math_docs = [{"id": f"math/{i:06d}", "text": _solution(p), "source": "math", "added": CREATED,
                  "created": CREATED, "metadata": {"template": p["template"], "answer": p["answer"]}}
                 for i, p in enumerate(train)]
    # first in the file: the last documents of a source are held out for perplexity
    math_docs = [{"id": f"math/planted-{i:03d}", "source": "math", "added": CREATED, "created": CREATED,
                  "text": f"{math_docs[i % len(math_docs)]['text'] if math_docs else ''}\n\n"
                          f"{e['question']} The answer is {e['answer']}.",
                  "metadata": {"planted_eval_item": f"math_eval-{i:04d}"}}
                 for i, e in enumerate(evals[:plant_eval_items])] + math_docs
    result: dict[str, Any] = {"files": {}, "docs": {}, "bytes": {}}
    for name, docs in (("code", code), ("prose", prose), ("math", math_docs)):
        path = out / f"{name}.jsonl"
        write_jsonl(path, docs)
        result["files"][name] = str(path)
        result["docs"][name] = len(docs)
        result["bytes"][name] = path.stat().st_size
    eval_path = out / "math_eval.jsonl"
    write_jsonl(eval_path, [{"id": f"math_eval-{i:04d}", "question": e["question"], "answer": e["answer"]}
                            for i, e in enumerate(evals)])
    result["eval"] = str(eval_path)
    return result
