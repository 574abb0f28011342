"""RULER-style long-context tasks, generated offline at any length (Hsieh et al. 2024).

Four tasks, each a generative task (``gen``: greedy decoding, exact match):

* ``passkey``: a pass key hidden in a haystack of repeated filler sentences ("The grass is green.
  ...") at a random depth; the model must repeat it.
* ``niah_multikey``: several "special magic numbers" for different keys in the haystack; the
  model must give the one for the asked key (the others are distractors).
* ``variable_tracking``: a chain ``VAR A = 12345 ... VAR B = A ... VAR C = B`` spread through the
  haystack; the model must name every variable holding the value, in order of assignment.
* ``common_words``: a numbered list of words where a few words recur many times; the model must
  name the most frequent ones (most frequent first).

``passkey_choice`` / ``niah_multikey_choice`` are the same items as multiple choice (``rc``): the
answer against three distractors (random numbers; the other keys' numbers, which are in the
prompt), scored by likelihood, chance 1/4: a graded signal for models too small to generate the
whole answer exactly.

A spec is ``NAME:LENGTH[:TOKENIZER_DIR]``: ``LENGTH`` is the prompt length in tokens of the given
tokenizer (in the evaluate stage: ``passkey:512:{inputs.tokenizer}``), or, without one, in
whitespace-separated words. Items are deterministic for a (name, length, seed). The same
generators write the synthetic long training documents of the long-context stage
(:func:`training_document`): a document is the prompt followed by its answer.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from olmoflow.errors import OlmoflowError

__all__ = ["RULER_TASKS", "TASK_NAMES", "make_items", "ruler_task", "training_document"]

FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
_SENTENCES = [f"{s.strip()}." for s in FILLER.split(".") if s.strip()]
_WORDS = ("apple river stone cloud garden window silver forest candle market bridge winter paper "
          "mountain button letter orange planet rabbit ladder pocket shadow thunder violin whistle "
          "anchor basket castle desert engine feather harbor island jacket kettle lemon mirror "
          "needle ocean pencil quartz rocket saddle tunnel valley wagon yellow zebra").split()
_KEYS = ("amber brisk cobalt dusky ember frosty glossy hollow ivory jolly kindly lunar misty noble "
         "opal prism quiet rustic sandy timber umber velvet woolly").split()

Counter = Callable[[str], int]


def _words(text: str) -> int:
    return len(text.split())


def _haystack(parts: list[str], length: int, count: Counter, rng: random.Random, tail: str) -> str:
    """``parts`` (needles) placed at random depths in filler so that the whole prompt (with
    ``tail``, the question) is about ``length`` units long; needles keep their order and all of
    them are placed, however short the filler.

    The filler is added a sentence at a time (the sentences of :data:`FILLER`, cycling), so the
    prompt comes within one sentence of ``length`` rather than within a whole filler paragraph."""
    budget = length - count(" ".join(parts + [tail]))
    costs = [max(1, count(" " + s)) for s in _SENTENCES]
    fill: list[str] = []
    while budget >= costs[len(fill) % len(_SENTENCES)]:
        budget -= costs[len(fill) % len(_SENTENCES)]
        fill.append(_SENTENCES[len(fill) % len(_SENTENCES)])
    n_fill = len(fill)
    if n_fill + 1 >= len(parts):
        slots = sorted(rng.sample(range(n_fill + 1), len(parts)))
    else:  # more needles than gaps: some share a gap
        slots = sorted(rng.randrange(n_fill + 1) for _ in parts)

    def build(n: int) -> str:
        out, k = [], 0
        for i in range(n + 1):
            while k < len(parts) and min(slots[k], n) == i:
                out.append(parts[k])
                k += 1
            if i < n:
                out.append(fill[i])
        return " ".join(out + [tail])

    text = build(n_fill)
    while n_fill and count(text) > length:  # joining can merge or split a token at a seam
        n_fill -= 1
        text = build(n_fill)
    return text


def _number(rng: random.Random, digits: int = 5) -> str:
    return str(rng.randint(10 ** (digits - 1), 10**digits - 1))


def _passkey(rng: random.Random, length: int, count: Counter) -> dict[str, Any]:
    key = _number(rng)
    needle = f"The pass key is {key}. Remember it. {key} is the pass key."
    intro = "There is a pass key hidden in the text below. Find it and memorize it."
    body = _haystack([needle], length - count(intro), count, rng, "What is the pass key? The pass key is")
    others = [_number(rng) for _ in range(3)]  # not in the prompt: a retriever prefers the key
    return {"prompt": f"{intro} {body}", "answer": key, "distractors": [o for o in others if o != key]}


def _niah_multikey(rng: random.Random, length: int, count: Counter, n_keys: int = 4) -> dict[str, Any]:
    keys = rng.sample(_KEYS, n_keys)
    vals = [_number(rng, 6) for _ in keys]
    needles = [f"One of the special magic numbers for {k} is: {v}." for k, v in zip(keys, vals)]
    rng.shuffle(needles)
    j = rng.randrange(n_keys)
    tail = f"What is the special magic number for {keys[j]}? The special magic number for {keys[j]} is:"
    # distractors: the other keys' numbers, all in the prompt (the model must match the key)
    return {"prompt": _haystack(needles, length, count, rng, tail), "answer": vals[j],
            "distractors": [v for i, v in enumerate(vals) if i != j]}


def _variable_tracking(rng: random.Random, length: int, count: Counter, hops: int = 3) -> dict[str, Any]:
    names = ["".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(4)) for _ in range(hops)]
    value = _number(rng)
    chain = [f"VAR {names[0]} = {value}."] + [f"VAR {names[i]} = {names[i - 1]}." for i in range(1, hops)]
    tail = f"Question: which variables are assigned the value {value}? Answer: they are"
    return {"prompt": _haystack(chain, length, count, rng, tail), "answer": " ".join(names)}


def _common_words(rng: random.Random, length: int, count: Counter, top: int = 3) -> dict[str, Any]:
    vocab = rng.sample(_WORDS, len(_WORDS))
    common, rare = vocab[:top], vocab[top:]
    head = "Below is a numbered list of words. Some words appear many times."
    tail = f"Question: what are the {top} most common words in the list? Answer: the most common words are"
    fixed = count(head + " " + tail)
    order = [rng.random() for _ in range(4 * length)]
    fill = [rng.choice(rare) for _ in range(4 * length)]

    def build(n_words: int) -> str:
        n_common = max(3, n_words // 6)
        counts = [n_common + 2 * (top - i) for i in range(top)]  # distinct counts: the order is defined
        words = [w for w, c in zip(common, counts) for _ in range(c)] + fill[: max(0, n_words - sum(counts))]
        words = [w for _, w in sorted(zip(order, words), key=lambda p: p[0])]
        return " ".join(f"{i + 1}. {w}" for i, w in enumerate(words))

    n = max(top * 6, (length - fixed) // 3)
    for _ in range(2):  # size the list in the counter's units: two rescaling passes
        n = max(top * 6, int(n * (length - fixed) / max(1, count(build(n)))))
    return {"prompt": f"{head} {build(n)} {tail}", "answer": " ".join(common)}


RULER_TASKS: dict[str, Callable[..., dict[str, Any]]] = {
    "passkey": _passkey,
    "niah_multikey": _niah_multikey,
    "variable_tracking": _variable_tracking,
    "common_words": _common_words,
}
#: task-spec names: the generative tasks and the multiple-choice forms of the numeric ones
TASK_NAMES = (*RULER_TASKS, "passkey_choice", "niah_multikey_choice")


def make_items(name: str, length: int, n: int, seed: int = 0, count: Counter | None = None) -> list[dict[str, Any]]:
    """``n`` items ``{id, prompt, answer}`` of task ``name`` with prompts of about ``length`` units
    (tokens of ``count``, default whitespace words)."""
    if name not in RULER_TASKS:
        raise OlmoflowError(f"unknown long-context task {name!r} (available: {', '.join(RULER_TASKS)})")
    if length < 16:
        raise OlmoflowError(f"task {name}: length {length} is too short (at least 16)")
    gen = RULER_TASKS[name]
    out = []
    for i in range(n):
        rng = random.Random(f"{name}-{length}-{seed}-{i}")
        out.append({"id": f"{name}-{length}-{i}", **gen(rng, length, count or _words)})
    return out


def training_document(name: str, length: int, seed: int, count: Counter | None = None) -> str:
    """One synthetic long training document: a task prompt and its answer (retrieval target)."""
    item = make_items(name, length, 1, seed, count)[0]
    return f"{item['prompt']} {item['answer']}."


def _token_counter(tok_dir: str) -> Counter:
    from olmoflow.tokenizer import load_tokenizer

    p = Path(tok_dir)
    if not p.exists():
        raise OlmoflowError(f"long-context task: tokenizer {tok_dir} does not exist")
    tok = load_tokenizer(p)
    return lambda text: len(tok.encode(text).ids)


def _choice_docs(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Multiple-choice form (``rc``): the answer among its distractors, scored by likelihood after
    the prompt (order fixed per item)."""
    out = []
    for it in items:
        choices = [it["answer"], *it["distractors"]]
        order = random.Random(it["id"]).sample(range(len(choices)), len(choices))
        out.append({"id": it["id"], "question": it["prompt"], "query": it["prompt"],
                    "choices": [choices[j] for j in order], "gold": order.index(0)})
    return out


def ruler_task(spec: str, n: int = 100, seed: int = 0):
    """The :class:`~olmoflow.eval.tasks.Task` for ``NAME:LENGTH[:TOKENIZER_DIR]``; ``NAME_choice``
    (passkey, niah_multikey) scores the answer against distractors by likelihood (chance 1/4)."""
    from olmoflow.eval.tasks import Task

    name, _, rest = spec.partition(":")
    if name.endswith("_choice"):
        base = name.removesuffix("_choice")
        if base not in ("passkey", "niah_multikey"):
            raise OlmoflowError(f"task {spec!r}: only passkey_choice and niah_multikey_choice exist")
        task = ruler_task(f"{base}:{rest}", n, seed)
        inner = task.loader

        def load_choice():
            docs, _ = inner()
            return _choice_docs(docs), []

        return Task(name=f"{name}:{task.name.split(':')[1]}", kind="rc", loader=load_choice, source=task.source,
                    num_shots=0, primary_metric="acc_raw")
    length_s, _, tok_dir = rest.partition(":")
    if not length_s.isdigit():
        raise OlmoflowError(f"task {spec!r}: give the length as {name}:LENGTH[:TOKENIZER_DIR], e.g. {name}:512")
    length = int(length_s)

    def load():
        count = _token_counter(tok_dir) if tok_dir else None
        docs = make_items(name, length, n, seed, count)
        return docs, []

    unit = "tokens" if tok_dir else "words"
    return Task(name=f"{name}:{length}", kind="gen", loader=load, source=f"generated({name},{length} {unit},n={n},"
                f"seed={seed})", num_shots=0, stop=["\n", "."], max_gen_toks=24, extract="none")
