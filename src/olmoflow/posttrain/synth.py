"""Offline chat data for the tiny flow: four kinds of conversations, generated from a seed.

:func:`make_chat_data` writes ``sft.jsonl`` (training conversations, kinds mixed) and
``heldout/<kind>.jsonl`` (evaluation prompts with gold fields, never in training):

- ``arith``: addition/subtraction (operands of 2–3 digits; ``arith_digits`` sets the most), as
  bare sums or word problems, with numbers in digits or in words; a step-by-step ``<think>`` trace
  (``reasoning_content``) and the final line ``The answer is N.``. Held-out records carry ``answer``.
- ``docstring``: "what does this function do" about Python stdlib functions, answered with the
  first sentence of the docstring (``inspect`` on a fixed list of modules, or the functions of the
  demo corpus's code documents when ``corpus_dir`` is given). Held-out functions are never in
  training; held-out records carry ``function`` and ``answer``.
- ``tool``: problems solved with a ``calculator(expression=...)`` tool: the assistant calls it,
  an environment turn returns the result (:func:`calculate`), the assistant answers. Held-out
  records carry ``tools``, ``call`` (the expected call) and ``answer``.
- ``ifeval``: prompts with checkable constraints (:mod:`olmoflow.scoring.instructions`); every
  training response is checked to satisfy its constraints. Held-out records carry ``constraints``.

Held-out records are ``{"id", "kind", "messages": [the prompt turns], "prompt": user text, ...gold}``;
training records ``{"id", "kind", "messages", "tools"?, ...gold}`` (the same gold fields, so a
pair builder or verifier can score new responses to training prompts too).

Held-out prompts are drawn first. Training conversations are then drawn skipping any problem
(same numbers, function, or topic and constraints) that is held out, and each candidate is run
through the post-training decontamination (word 8-grams, one conversation covering ≥ 50% of a
held-out prompt's words, :class:`olmoflow.data.steps.decontaminate.EvalIndex`) against all
held-out prompts; matches are dropped (and replaced) and listed in ``decontamination.json``.
Same seed and sizes -> byte-identical files (docstrings come from the running Python).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import operator
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from olmoflow.data.demo import ITEMS, NAMES, column_steps
from olmoflow.data.steps.decontaminate import DecontaminateConfig, EvalIndex
from olmoflow.errors import OlmoflowError
from olmoflow.io import atomic_write_json, write_jsonl
from olmoflow.scoring.instructions import check, describe

__all__ = ["ARITH_STYLES", "ARITH_TRACES", "CALCULATOR_TOOL", "KINDS", "TRAIN_SHARES", "calculate", "docstring_functions", "make_chat_data",
           "number_words"]

KINDS = ("arith", "docstring", "tool", "ifeval")
#: share of the training conversations of each kind
TRAIN_SHARES = {"arith": 0.5, "docstring": 0.15, "tool": 0.15, "ifeval": 0.2}
_DECONTAM = DecontaminateConfig(step="decontaminate", mode="posttrain")

Record = dict[str, Any]
#: a generator draws one problem: (key identifying the problem, training record, held-out record)
Generator = Callable[[random.Random], tuple[str, Record, Record]]


def _user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def _assistant(text: str, reasoning: str | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": text}
    if reasoning is not None:
        msg["reasoning_content"] = reasoning
    return msg


# ---------------------------------------------------------------------------------- arithmetic
_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
         "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def number_words(n: int) -> str:
    """English words for 0 <= n < 1000 (``107`` -> ``one hundred seven``, ``42`` -> ``forty-two``)."""
    if not 0 <= n < 1000:
        raise ValueError(f"number_words: {n} is outside 0..999")
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else "-" + _ONES[n % 10])
    return _ONES[n // 100] + " hundred" + ("" if n % 100 == 0 else " " + number_words(n % 100))


_ADD_WORDS = [
    "{n} has {a} {it}. {m} gives {n} {b} more. How many {it} now?",
    "A shop sold {a} {it} on Monday and {b} on Tuesday. How many {it} in total?",
    "{n} walked {a} meters, rested, then walked {b} meters more. How many meters in all?",
]
_SUB_WORDS = [
    "{n} had {a} {it} and gave {b} to {m}. How many {it} are left?",
    "A library owns {a} books and {b} are lent out. How many remain?",
    "A tank holds {a} liters. {n} drains {b} liters. How many liters stay?",
]


def _place_steps(a: int, b: int, sign: int) -> list[str]:
    """``a ± b`` one place value of ``b`` at a time: ["345 - 100 = 245", "245 - 20 = 225", ...]."""
    steps, cur, op = [], a, "+" if sign > 0 else "-"
    for unit in (100, 10, 1):
        part = b // unit % 10 * unit
        if part:
            steps.append(f"{cur} {op} {part} = {cur + sign * part}")
            cur += sign * part
    return steps


#: how a problem may be asked: bare sums in digits, in words, or as a word problem with digits
ARITH_STYLES = ("digits", "words", "story")
#: how the ``<think>`` trace works a problem out: by place value of the second operand (``345 - 20 =
#: 325``) or column by column, ones first (``5 - 0 = 5. 14 - 2 = 12 ...``: single-digit facts with a
#: carry or borrow, which a tiny model with a digit-splitting tokenizer learns much sooner)
ARITH_TRACES = ("place", "columns")


def _arith_generator(digits: int = 3, styles: tuple[str, ...] = ARITH_STYLES, trace: str = "place") -> Generator:
    """Addition/subtraction problems with operands of 2..``digits`` digits (1 digit: 1..9), asked in
    one of ``styles`` and worked out in a ``trace`` (:data:`ARITH_TRACES`); subtraction never goes
    below zero."""
    lo, hi = (1 if digits == 1 else 10), 10**digits - 1

    def gen(r: random.Random) -> tuple[str, Record, Record]:
        sign = r.choice((1, -1))
        a, b = r.randint(lo, hi), r.randint(lo, hi)
        if sign < 0 and b > a:
            a, b = b, a
        answer = a + sign * b
        style = r.choice(styles)
        if style == "story":
            n, m = r.sample(NAMES, 2)
            template = r.choice(_ADD_WORDS if sign > 0 else _SUB_WORDS)
            question = template.format(n=n, m=m, it=r.choice(ITEMS), a=a, b=b)
            intro = f"This is {a} {'+' if sign > 0 else '-'} {b}."
        elif style == "words":
            question = f"What is {number_words(a)} {'plus' if sign > 0 else 'minus'} {number_words(b)}?"
            intro = f"{number_words(a)} is {a} and {number_words(b)} is {b}.".capitalize()
        else:
            question = r.choice(("What is {a} {w} {b}?", "Compute {a} {o} {b}.", "{a} {o} {b} = ?")).format(
                a=a, b=b, w="plus" if sign > 0 else "minus", o="+" if sign > 0 else "-")
            intro = f"We need {a} {'+' if sign > 0 else '-'} {b}."
        steps = (_place_steps if trace == "place" else column_steps)(a, b, sign)
        thinking = " ".join([intro, *[s + "." for s in steps]])
        key = f"{'+' if sign > 0 else '-'}:{a}:{b}"
        train = {"messages": [_user(question), _assistant(f"The answer is {answer}.", thinking)], "answer": str(answer)}
        heldout = {"messages": [_user(question)], "prompt": question, "answer": str(answer)}
        return key, train, heldout
    return gen


# -------------------------------------------------------------------------------- calculator tool
CALCULATOR_TOOL: Record = {
    "type": "function",
    "function": {
        "name": "calculator",
        "description": "Evaluate an arithmetic expression (+, -, *, /, parentheses) and return the result.",
        "parameters": {
            "type": "object",
            "properties": {"expression": {"type": "string", "description": "for example 12 * (3 + 4)"}},
            "required": ["expression"],
        },
    },
}
_OPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
}


def calculate(expression: str) -> str:
    """The calculator tool: evaluate ``+ - * / // %``, unary minus and parentheses over numbers.

    Nothing else is evaluated (no names, calls or powers), so a model's call is safe to run.
    Integral results print without a decimal point (``"888"``); OlmoflowError on anything else.
    """
    def ev(node: ast.AST) -> int | float:
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            v = ev(node.operand)
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.left), ev(node.right))
        raise OlmoflowError(f"calculator: unsupported expression {expression!r}")

    try:
        value = ev(ast.parse(expression.strip(), mode="eval").body)
    except (SyntaxError, ZeroDivisionError, OverflowError) as e:
        raise OlmoflowError(f"calculator: cannot evaluate {expression!r} ({e})") from None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(round(value, 6) if isinstance(value, float) else value)


def _tool(r: random.Random) -> tuple[str, Record, Record]:
    n, it = r.choice(NAMES), r.choice(ITEMS)
    a, b, c = r.randint(11, 99), r.randint(11, 99), r.randint(10, 999)
    question, expression = r.choice((
        (f"Use the calculator: what is {a} times {b}?", f"{a} * {b}"),
        (f"What is {a} * {b} + {c}? Use the calculator.", f"{a} * {b} + {c}"),
        (f"A box holds {a} {it}. How many {it} are in {b} boxes?", f"{a} * {b}"),
        (f"{n} shares {a * b} {it} equally among {b} friends. How many does each get?",
         f"{a * b} / {b}"),
        (f"{n} buys {a} packs of {b} {it} and {c} single {it}. How many {it} is that?", f"{a} * {b} + {c}"),
    ))
    result = calculate(expression)
    call = {"name": "calculator", "arguments": {"expression": expression}}
    messages = [
        _user(question),
        {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": call}]},
        {"role": "environment", "content": result},
        _assistant(f"The answer is {result}."),
    ]
    train = {"messages": messages, "tools": [CALCULATOR_TOOL], "call": call, "answer": result}
    heldout = {"messages": [_user(question)], "tools": [CALCULATOR_TOOL], "prompt": question, "call": call,
               "answer": result}
    return expression, train, heldout


# ------------------------------------------------------------------------------------ docstrings
#: modules whose public functions the docstring questions are about (fixed, so data are offline)
DOC_MODULES = ("os.path", "json", "math", "string", "textwrap", "shutil", "statistics", "random", "functools",
               "operator", "heapq", "bisect", "re", "fnmatch", "glob", "base64", "zlib", "calendar", "colorsys",
               "html", "urllib.parse", "difflib", "keyword", "copy", "gzip", "shlex", "unicodedata", "binascii",
               "inspect", "tempfile", "platform", "mimetypes", "email.utils", "linecache", "filecmp")
_FIRST_SENTENCE = re.compile(r"^(.+?[.!?])(?:\s|$)", re.DOTALL)
_DOC_QUESTIONS = ("What does the Python function `{f}` do?", "Explain what `{f}()` does in one sentence.",
                  "In Python, what is `{f}` for?")


def _first_sentence(doc: str | None) -> str | None:
    """First sentence of a docstring's first paragraph, if it reads like a sentence (not a signature)."""
    if not doc:
        return None
    para = " ".join(inspect.cleandoc(doc).split("\n\n")[0].split())
    m = _FIRST_SENTENCE.match(para)
    if m is None:
        return None
    s = m.group(1)
    ok = 20 <= len(s) <= 150 and s[0].isupper() and "(" not in s.split(" ")[0]
    return s if ok else None


def _corpus_functions(corpus_dir: Path) -> dict[str, str]:
    """Public top-level functions with docstrings in the Python documents of a demo corpus."""
    from olmoflow.posttrain.chat_data import iter_chat_records

    out: dict[str, str] = {}
    for path in sorted(corpus_dir.glob("*.jsonl*")):
        for _, doc, reason in iter_chat_records(path):
            meta = doc.get("metadata") if reason is None and isinstance(doc, dict) else None
            rel = meta.get("path") if isinstance(meta, dict) and meta.get("language") == "python" else None
            if not isinstance(rel, str) or not isinstance(doc.get("text"), str):
                continue
            module = rel.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
            if any(part.startswith("_") for part in module.split(".")):
                continue  # private modules
            try:
                tree = ast.parse(doc["text"])
            except (SyntaxError, ValueError):
                continue
            for node in tree.body:
                if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
                    sentence = _first_sentence(ast.get_docstring(node))
                    if sentence:
                        out[f"{module}.{node.name}"] = sentence
    return out


def docstring_functions(corpus_dir: str | Path | None = None) -> list[tuple[str, str]]:
    """(qualified name, first docstring sentence) of the functions docstring questions ask about,
    sorted by name: the public functions of :data:`DOC_MODULES`, or of the demo corpus's code."""
    if corpus_dir is not None:
        found = _corpus_functions(Path(corpus_dir))
        if not found:
            raise OlmoflowError(f"{corpus_dir}: no Python code documents with documented functions")
        return sorted(found.items())
    out: dict[str, str] = {}
    for name in DOC_MODULES:
        mod = importlib.import_module(name)
        for attr, obj in vars(mod).items():
            if attr.startswith("_") or not (inspect.isfunction(obj) or inspect.isbuiltin(obj)):
                continue
            if getattr(obj, "__module__", None) not in (mod.__name__, name):
                continue  # re-exported from elsewhere
            sentence = _first_sentence(inspect.getdoc(obj))
            if sentence:
                out[f"{name}.{attr}"] = sentence
    return sorted(out.items())


def _docstring_generator(functions: list[tuple[str, str]], one_per_function: bool) -> Generator:
    """Questions about ``functions``; keyed by function (one question each) or by question."""
    def gen(r: random.Random) -> tuple[str, Record, Record]:
        name, sentence = r.choice(functions)
        question = r.choice(_DOC_QUESTIONS).format(f=name)
        train = {"messages": [_user(question), _assistant(sentence)], "function": name, "answer": sentence}
        heldout = {"messages": [_user(question)], "prompt": question, "function": name, "answer": sentence}
        return name if one_per_function else question, train, heldout
    return gen


# ---------------------------------------------------------------------------- instruction following
_TOPICS = {
    "the ocean": ["deep", "blue", "vast", "salty", "calm"], "autumn": ["cool", "golden", "windy", "quiet", "crisp"],
    "coffee": ["bitter", "warm", "dark", "strong", "fragrant"], "trains": ["long", "fast", "loud", "steady", "old"],
    "a city at night": ["bright", "busy", "noisy", "alive", "glowing"],
    "mountains": ["tall", "rocky", "cold", "steep", "silent"], "rain": ["wet", "soft", "gray", "cool", "steady"],
    "libraries": ["quiet", "calm", "old", "useful", "warm"], "cats": ["curious", "soft", "lazy", "quick", "proud"],
    "gardens": ["green", "fresh", "colorful", "calm", "lush"], "winter": ["cold", "white", "dark", "still", "long"],
    "bicycles": ["light", "quick", "simple", "quiet", "useful"], "bread": ["warm", "soft", "fresh", "simple", "golden"],
    "the moon": ["pale", "round", "distant", "bright", "silent"], "music": ["loud", "sweet", "lively", "soft", "bold"],
    "deserts": ["dry", "hot", "vast", "empty", "sandy"], "rivers": ["long", "fast", "cool", "winding", "clear"],
    "old maps": ["faded", "curious", "worn", "detailed", "rare"], "birds": ["small", "quick", "bright", "loud", "free"],
    "snow": ["white", "cold", "soft", "quiet", "fresh"], "markets": ["busy", "loud", "colorful", "crowded", "lively"],
    "forests": ["green", "dark", "deep", "quiet", "old"], "tea": ["warm", "calm", "green", "bitter", "light"],
    "summer": ["hot", "long", "bright", "lazy", "sunny"],
}
_LEADS = ("Write about {t}.", "Describe {t}.", "Tell me about {t}.", "Say something about {t}.")
_SENTENCES = ("{T} is {a} and {b}.", "Many people love {t}.", "I find {t} {a}.", "{T} always feels {a}.",
              "Everyone says {t} is {a}.", "Some days {t} seems {a} to me.", "{T} can be {a} and {b} at once.")
_FILLERS = {1: "{A}.", 2: "So {a}.", 3: "It is {a}.", 4: "It is so {a}."}
_FORBIDDEN = ("thing", "stuff", "nice", "good", "really", "very")
_STARTS = ("Sure.", "Here it is:", "Of course.", "Well,")
_ENDS = ("That is all.", "Thank you.", "The end.", "Hope this helps.")
_JSON_VALUES: dict[str, Callable[[str, list[str], random.Random], Any]] = {
    "topic": lambda t, adj, r: t, "mood": lambda t, adj, r: r.choice(adj), "rating": lambda t, adj, r: r.randint(1, 5),
    "summary": lambda t, adj, r: f"{t.capitalize()} is {adj[0]} and {adj[1]}.",
    "tags": lambda t, adj, r: r.sample(adj, 2), "words": lambda t, adj, r: len(t.split()),
}


def _sentence(t: str, adj: list[str], r: random.Random) -> str:
    a, b = r.sample(adj, 2)
    return r.choice(_SENTENCES).format(t=t, T=t[0].upper() + t[1:], a=a, b=b)


def _exact_words(t: str, adj: list[str], n: int, r: random.Random) -> str:
    """Sentences about ``t`` with exactly ``n`` words in all: whole sentences, then short fillers."""
    from olmoflow.scoring.instructions import count_words

    out: list[str] = []
    left = n
    for _ in range(20):
        s = _sentence(t, adj, r)
        if count_words(s) <= left:
            out.append(s)
            left -= count_words(s)
    while left:
        k = min(left, 4)
        a = r.choice(adj)
        out.append(_FILLERS[k].format(a=a, A=a.capitalize()))
        left -= k
    return " ".join(out)


def _ifeval(r: random.Random) -> tuple[str, Record, Record]:
    t = r.choice(sorted(_TOPICS))
    adj = _TOPICS[t]
    kind = r.randrange(12)
    body = " ".join(_sentence(t, adj, r) for _ in range(r.randint(2, 3)))
    if kind == 0:
        n = r.randint(5, 15)
        cons, resp = [{"type": "word_count", "relation": "exactly", "n": n}], _exact_words(t, adj, n, r)
    elif kind == 1:
        n = r.randint(8, 20)
        cons, resp = [{"type": "word_count", "relation": "at_most", "n": n}], _exact_words(t, adj, n - r.randint(0, 4), r)
    elif kind == 2:
        n = r.randint(10, 25)
        cons, resp = [{"type": "word_count", "relation": "at_least", "n": n}], _exact_words(t, adj, n + r.randint(0, 5), r)
    elif kind == 3:
        k = r.randint(1, 4)
        cons, resp = [{"type": "sentence_count", "relation": "exactly", "n": k}], " ".join(
            _sentence(t, adj, r) for _ in range(k))
    elif kind == 4:
        cons, resp = [{"type": "lowercase"}], body.lower()
    elif kind == 5:
        cons, resp = [{"type": "uppercase"}], body.upper()
    elif kind == 6:
        kw = r.sample(adj, 2)
        k = r.randint(2, 3)
        first = f"{t[0].upper() + t[1:]} is {kw[0]} and {kw[1]}."
        cons = [{"type": "keywords_present", "keywords": kw}, {"type": "sentence_count", "relation": "exactly", "n": k}]
        resp = " ".join([first, *(_sentence(t, adj, r) for _ in range(k - 1))])
    elif kind == 7:
        cons, resp = [{"type": "keywords_absent", "keywords": r.sample(_FORBIDDEN, 2)}], body
    elif kind == 8:
        keys = r.sample(sorted(_JSON_VALUES), r.randint(2, 3))
        obj = {k: _JSON_VALUES[k](t, adj, r) for k in keys}
        text = json.dumps(obj)
        cons, resp = [{"type": "json_keys", "keys": keys}], f"```json\n{text}\n```" if r.random() < 0.5 else text
    elif kind == 9:
        n = r.randint(5, 12)
        cons = [{"type": "lowercase"}, {"type": "word_count", "relation": "exactly", "n": n}]
        resp = _exact_words(t, adj, n, r).lower()
    elif kind == 10:
        start, end = r.choice(_STARTS), r.choice(_ENDS)
        cons = [{"type": "starts_with", "text": start}, {"type": "ends_with", "text": end}]
        resp = f"{start} {body} {end}"
    else:
        start = r.choice(_STARTS)
        cons, resp = [{"type": "starts_with", "text": start}], f"{start} {body}"
    prompt = " ".join([r.choice(_LEADS).format(t=t), *(describe(c) for c in cons)])
    key = json.dumps([t, cons])  # the same topic and constraints in other words is the same problem
    score, why = check(resp, cons)
    if score != 1.0:  # a generator bug, not bad input: training data must satisfy its constraints
        raise AssertionError(f"synth ifeval response fails its constraints: {why}\n{prompt}\n{resp}")
    train = {"messages": [_user(prompt), _assistant(resp)], "constraints": cons}
    heldout = {"messages": [_user(prompt)], "prompt": prompt, "constraints": cons}
    return key, train, heldout


# ----------------------------------------------------------------------------------------- driver
def _conversation_text(rec: Record) -> str:
    """The words a conversation holds (contents, reasoning, tool-call arguments) for decontamination."""
    parts = []
    for m in rec["messages"]:
        parts += [m.get("content") or "", m.get("reasoning_content") or ""]
        parts += [json.dumps(c["function"]["arguments"]) for c in m.get("tool_calls") or []]
    return " ".join(parts)


def _draw(gen: Generator, r: random.Random, n: int, skip: set[str]) -> list[tuple[str, Record, Record]]:
    """``n`` problems with distinct keys not in ``skip`` (fewer if 50 draws per problem find no new one)."""
    out, seen = [], set(skip)
    for _ in range(50 * n):
        if len(out) == n:
            break
        key, train, heldout = gen(r)
        if key not in seen:
            seen.add(key)
            out.append((key, train, heldout))
    return out


def make_chat_data(
    out_dir: str | Path,
    seed: int = 0,
    n_train: int = 2000,
    n_heldout: int = 100,
    corpus_dir: str | Path | None = None,
    arith_digits: int = 3,
    arith_styles: tuple[str, ...] | list[str] = ARITH_STYLES,
    arith_trace: str = "place",
) -> dict[str, Any]:
    """Write ``sft.jsonl``, ``heldout/<kind>.jsonl`` and ``decontamination.json`` into ``out_dir``.

    ``n_train`` conversations in all (shares :data:`TRAIN_SHARES`), ``n_heldout`` prompts per kind
    (docstring: one question per function, at most a quarter of the available functions; the
    rest stay for training). ``arith_digits`` (1..3) bounds the arithmetic operands (2 digits
    with digits and words mixed is what a tiny model learns in minutes) and ``arith_styles`` picks
    the ways a problem is asked (a subset of :data:`ARITH_STYLES`), ``arith_trace`` how the
    ``<think>`` trace works it out (:data:`ARITH_TRACES`).
    Returns ``{"train": {kind: n}, "heldout": {kind: n}, "decontamination": {...}, "files": {...}}``.
    """
    if n_train < 1 or n_heldout < 1:
        raise OlmoflowError(f"make_chat_data: n_train ({n_train}) and n_heldout ({n_heldout}) must be >= 1")
    if arith_digits not in (1, 2, 3):
        raise OlmoflowError(f"make_chat_data: arith_digits must be 1, 2 or 3, not {arith_digits}")
    unknown = sorted(set(arith_styles) - set(ARITH_STYLES))
    if unknown or not arith_styles:
        raise OlmoflowError(f"make_chat_data: arith_styles {list(arith_styles)} must be a non-empty subset of "
                            f"{list(ARITH_STYLES)}")
    if arith_trace not in ARITH_TRACES:
        raise OlmoflowError(f"make_chat_data: arith_trace must be one of {list(ARITH_TRACES)}, not {arith_trace!r}")
    arith = _arith_generator(arith_digits, tuple(arith_styles), arith_trace)
    out = Path(out_dir)
    functions = docstring_functions(corpus_dir)
    r = random.Random(f"olmoflow-chat-{seed}")
    r.shuffle(functions)
    n_doc_held = min(n_heldout, len(functions) // 4)
    gens: dict[str, tuple[Generator, Generator]] = {  # (held-out generator, training generator)
        "arith": (arith, arith),
        "docstring": (_docstring_generator(functions[:n_doc_held], True),
                      _docstring_generator(functions[n_doc_held:], False)),
        "tool": (_tool, _tool),
        "ifeval": (_ifeval, _ifeval),
    }
    heldout: dict[str, list[Record]] = {}
    held_keys: set[str] = set()
    for kind in KINDS:
        drawn = _draw(gens[kind][0], random.Random(f"{seed}:{kind}:heldout"), n_heldout, set())
        held_keys |= {k for k, _, _ in drawn}
        heldout[kind] = [{"id": f"{kind}-heldout-{i:05d}", "kind": kind, **h} for i, (_, _, h) in enumerate(drawn)]
    index = EvalIndex([(rec["id"], rec["prompt"]) for recs in heldout.values() for rec in recs],
                      n=_DECONTAM.ngram, mode="posttrain")

    quotas = {k: int(n_train * TRAIN_SHARES[k]) for k in KINDS}
    quotas["arith"] += n_train - sum(quotas.values())
    train: list[Record] = []
    removed: dict[str, int] = {}
    matches: list[dict[str, Any]] = []
    for kind in KINDS:
        rng = random.Random(f"{seed}:{kind}:train")
        kept: list[Record] = []
        skip = set(held_keys)
        removed[kind] = 0
        while len(kept) < quotas[kind]:
            batch = _draw(gens[kind][1], rng, quotas[kind] - len(kept), skip)
            if not batch:
                break  # the generator has no new problems left: fewer than the quota
            for key, rec, _ in batch:
                skip.add(key)
                hits = index.match(_conversation_text(rec), _DECONTAM.coverage_threshold)
                if hits:
                    removed[kind] += 1
                    matches.append({"kind": kind, "prompt": rec["messages"][0]["content"],
                                    "items": [{"item": i, "score": s} for i, s in hits]})
                else:
                    kept.append({"kind": kind, **rec})
        train += [{"id": f"{kind}-{i:05d}", **rec} for i, rec in enumerate(kept)]
    random.Random(f"{seed}:mix").shuffle(train)

    files = {"sft": str(out / "sft.jsonl")}
    write_jsonl(out / "sft.jsonl", train)
    for kind, recs in heldout.items():
        files[kind] = str(out / "heldout" / f"{kind}.jsonl")
        write_jsonl(files[kind], recs)
    decontam = {"mode": "posttrain", "ngram": _DECONTAM.ngram, "coverage_threshold": _DECONTAM.coverage_threshold,
                "heldout_items": len(index.ids), "removed": removed, "matches": matches}
    atomic_write_json(out / "decontamination.json", decontam)
    files["decontamination"] = str(out / "decontamination.json")
    counts = {k: sum(1 for t in train if t["kind"] == k) for k in KINDS}
    return {"train": counts, "heldout": {k: len(v) for k, v in heldout.items()},
            "decontamination": {"removed": removed, "matched_items": len({m["item"] for x in matches
                                                                          for m in x["items"]})},
            "files": files, "seed": seed}
