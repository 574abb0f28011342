"""Run one task against a ``HarnessLM``: build requests, score them, compute metrics.

Each ``run_*`` returns ``(metrics, items)``; ``items`` are the per-document outputs written into
the results file (gold, scores, predictions, generations) so any number can be audited.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from olmoflow.errors import OlmoflowError
from olmoflow.eval.lm import HarnessLM
from olmoflow.eval.metrics import bits_per_byte, mean, pass_at_k
from olmoflow.eval.tasks import LETTERS, Task, fewshot_examples, fewshot_prefix
from olmoflow.scoring.answers import extract_final_answer, extract_last_number
from olmoflow.scoring.math import numbers_equal, sympy_equal

__all__ = ["run_task", "score_code", "n_requests", "aggregate", "PMI_CONTEXT"]

Progress = Callable[[int], None] | None
PMI_CONTEXT = "Answer:"


def _argmax(xs: list[float]) -> int:
    return max(range(len(xs)), key=lambda i: (xs[i], -i))  # first of ties


def aggregate(scores: dict[str, list[float]], docs: list[dict[str, Any]]) -> dict[str, float]:
    """Per-item scores -> task metrics.

    A task whose docs carry a ``subject`` (MMLU, the Minerva MATH subsets) is reported as OLMES
    reports such suites (``TASK_SUITE_CONFIGS[...]["primary_metric"] = "macro"``): each metric is
    the mean of the per-subject means, so every subject weighs the same. ``<metric>_micro`` is
    the mean over all items, lm-eval's group score (its ``mmlu`` weights subjects by size) —
    compare that one with lm-eval. Other tasks: plain means."""
    subjects = [d.get("subject") for d in docs]
    if all(s is None for s in subjects):
        return {k: mean(v) for k, v in scores.items()}
    macro, micro = {}, {}
    for k, v in scores.items():
        by_subject: dict[Any, list[float]] = defaultdict(list)
        for s, x in zip(subjects, v):
            by_subject[s].append(x)
        macro[k] = mean([mean(xs) for xs in by_subject.values()])
        micro[f"{k}_micro"] = mean(v)
    return macro | micro


def _with_subject(item: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    return item | {"subject": doc["subject"]} if "subject" in doc else item


def n_requests(task: Task, docs: list[dict[str, Any]]) -> int:
    """How many model requests a task makes (for progress bars)."""
    if task.kind == "rc":
        return sum(2 * len(d["choices"]) for d in docs)
    if task.kind == "mc":
        return sum(len(d["choices"]) for d in docs)
    if task.kind == "code":
        return len(docs) * task.n_samples
    return len(docs)


def run_task(
    task: Task, lm: HarnessLM, docs: list[dict[str, Any]], pool: list[dict[str, Any]],
    seed: int = 0, progress: Progress = None,
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Evaluate ``docs`` of ``task``; few-shot examples are drawn from ``pool``."""
    fn = {"rc": run_rc, "mc": run_mc, "gen": run_gen, "code": run_code, "ppl": run_ppl, "chat": run_chat}[task.kind]
    return fn(task, lm, docs, pool, seed, progress)


def run_rc(task, lm, docs, pool, seed, progress):
    """Cloze: every answer scored as a continuation; raw / per-token / per-char / PMI accuracies."""
    reqs: list[tuple[str, str]] = []
    for d in docs:
        ctx = fewshot_prefix(task, fewshot_examples(task, pool, d)) + task.query(d)
        reqs += [(ctx, " " + c) for c in d["choices"]]
        reqs += [(PMI_CONTEXT, " " + c) for c in d["choices"]]
    scores = lm.loglikelihood(reqs, progress)
    items, correct = [], defaultdict(list)
    pos = 0
    for d in docs:
        k = len(d["choices"])
        ll = [s for s, _ in scores[pos: pos + k]]
        unc = [s for s, _ in scores[pos + k: pos + 2 * k]]
        conts = reqs[pos: pos + k]
        pos += 2 * k
        ntok = [max(1, len(lm.encode_pair(c, x)[1])) for c, x in conts]
        nchar = [max(1, len(x)) for _, x in conts]
        preds = {
            "raw": _argmax(ll),
            "per_token": _argmax([a / n for a, n in zip(ll, ntok)]),
            "per_char": _argmax([a / n for a, n in zip(ll, nchar)]),
            "pmi": _argmax([a - u for a, u in zip(ll, unc)]),
        }
        for name, p in preds.items():
            correct[name].append(float(p == d["gold"]))
        items.append(_with_subject({"id": d["id"], "gold": d["gold"], "loglikelihoods": ll, "unconditional": unc,
                                    "n_tokens": ntok, "pred": preds}, d))
    return aggregate({f"acc_{k}": v for k, v in correct.items()}, docs), items


def run_mc(task, lm, docs, pool, seed, progress):
    """Multiple choice: the options are listed with letters; score `` A``, `` B``, …"""
    reqs: list[tuple[str, str]] = []
    for d in docs:
        ctx = fewshot_prefix(task, fewshot_examples(task, pool, d)) + task.mc_query(d)
        reqs += [(ctx, " " + LETTERS[i]) for i in range(len(d["choices"]))]
    scores = lm.loglikelihood(reqs, progress)
    items, acc, pos = [], [], 0
    for d in docs:
        ll = [s for s, _ in scores[pos: pos + len(d["choices"])]]
        pos += len(d["choices"])
        pred = _argmax(ll)
        acc.append(float(pred == d["gold"]))
        items.append(_with_subject({"id": d["id"], "gold": d["gold"], "loglikelihoods": ll, "pred": pred}, d))
    return aggregate({"acc_raw": acc}, docs), items


def _extract(task: Task, text: str) -> str | None:
    if task.extract == "boxed":
        return extract_final_answer(text)
    if task.extract == "last_number":
        return extract_last_number(text)
    return text.strip()


def run_gen(task, lm, docs, pool, seed, progress):
    """Generate until a stop sequence, extract the answer, exact match against the gold.

    MATH-style tasks (``extract="boxed"``) also report ``exact_match_flex``: equal as for
    ``exact_match`` or, as Minerva/OLMES also count it, when sympy shows the answers equal."""
    kw = {"until": task.stop, "max_gen_toks": task.max_gen_toks, "temperature": task.temperature,
          "top_p": task.top_p, "seed": seed}
    reqs = [(fewshot_prefix(task, fewshot_examples(task, pool, d)) + d["prompt"], kw) for d in docs]
    if task.chat:  # the few-shot prompt as the user's turn; the reply is the assistant's
        reqs = [(_chat_prompt([{"role": "user", "content": text}]), _chat_kw(kw)) for text, kw in reqs]
    outs = lm.generate_until(reqs, progress)
    flex = task.extract == "boxed"
    items: list[dict[str, Any]] = []
    scores: dict[str, list[float]] = {"exact_match": [], **({"exact_match_flex": []} if flex else {})}
    for d, out in zip(docs, outs):
        pred, gold = _extract(task, out), str(d["answer"])
        ok = numbers_equal(pred, gold) if task.extract != "none" else (pred == gold.strip())
        scores["exact_match"].append(float(ok))
        item = {"id": d["id"], "answer": gold, "output": out, "extracted": pred, "correct": ok}
        if flex:
            item["correct_flex"] = ok or sympy_equal(pred, gold)  # ok: numbers_equal already
            scores["exact_match_flex"].append(float(item["correct_flex"]))
        items.append(_with_subject(item, d))
    return aggregate(scores, docs), items


def score_code(
    problems: list[dict[str, Any]], completions: list[list[str]], ks: list[int] | tuple[int, ...] = (1,),
    timeout_s: float = 10.0, workers: int = 4, progress: Progress = None,
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Run every completion against its problem's tests (:func:`olmoflow.scoring.code.check_function`:
    the program in the sandbox, the tests here, so a pass cannot be forged); unbiased pass@k over
    each problem's samples."""
    from olmoflow.scoring.code import check_function

    jobs = [(i, j) for i, comps in enumerate(completions) for j in range(len(comps))]

    def one(job):
        i, j = job
        p = problems[i]
        r = check_function(p["prompt"] + completions[i][j], p["entry_point"], p["test"], context=p["prompt"],
                           timeout_s=timeout_s)
        if progress:
            progress(1)
        return job, r

    results: dict[tuple[int, int], Any] = {}
    with ThreadPoolExecutor(max_workers=max(1, workers)) as ex:
        for job, r in ex.map(one, jobs):
            results[job] = r
    items, per_k = [], defaultdict(list)
    for i, (p, comps) in enumerate(zip(problems, completions)):
        passed = [results[(i, j)].passed for j in range(len(comps))]
        n, c = len(passed), sum(passed)
        for k in ks:
            if k <= n:
                per_k[k].append(pass_at_k(n, c, k))
        items.append({"task_id": p["task_id"], "completions": comps, "passed": passed,
                      "reasons": [results[(i, j)].reason for j in range(len(comps))]})
    return {f"pass@{k}": mean(v) for k, v in sorted(per_k.items())}, items


def run_code(task, lm, docs, pool, seed, progress):
    """Sample ``n_samples`` completions per problem, execute the tests, report pass@k."""
    reqs = [(d["prompt"], {"until": task.stop, "max_gen_toks": task.max_gen_toks,
                           "temperature": task.temperature, "top_p": task.top_p, "seed": seed * 100003 + 7919 * i + s})
            for i, d in enumerate(docs) for s in range(task.n_samples)]
    if task.chat:  # ask for the function in a fenced block; the tests run on what the reply defines
        reqs = [(_chat_prompt([{"role": "user", "content": CODE_CHAT_INSTRUCTION + "```python\n" + text + "```"}]),
                 _chat_kw(kw)) for text, kw in reqs]
    outs = lm.generate_until(reqs, progress)
    if task.chat:
        outs = [_chat_completion(o, docs[i // task.n_samples]) for i, o in enumerate(outs)]
    comps = [outs[i * task.n_samples: (i + 1) * task.n_samples] for i in range(len(docs))]
    return score_code(docs, comps, task.ks, task.timeout_s)


# ---------------------------------------------------------------------------------- chat
CODE_CHAT_INSTRUCTION = "Complete the following Python function. Reply with the whole function in a code block.\n"


def _chat_prompt(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> str:
    from olmoflow.tokenizer.chat import apply_chat_template

    return apply_chat_template(messages, tools, add_generation_prompt=True)


def _chat_kw(kw: dict[str, Any]) -> dict[str, Any]:
    """Generation settings of a chat turn: it ends at ``<|im_end|>``; stop strings of the plain
    format do not apply."""
    from olmoflow.tokenizer.special import IM_END

    return {**kw, "until": [], "stop_tokens": [IM_END]}


def _chat_completion(reply: str, doc: dict[str, Any]) -> str:
    """The completion of a HumanEval prompt from a chat reply: the reply's (last) code block, with the
    prompt's imports and helpers before it when it redefines the function."""
    from olmoflow.posttrain.verifiers.code import program_of

    code = program_of(reply)
    if f"def {doc['entry_point']}" in code:
        return "\n" + code  # a full definition replaces the prompt's stub (later definitions win)
    return code


def run_chat(task, lm, docs, pool, seed, progress):
    """Chat items: the conversation so far through the chat template, the model's reply scored by
    the item's verifier (``olmoflow.posttrain.verifiers``: math answer, IF constraints, tool call,
    ...). ``accuracy`` = share of replies scoring 1, ``score`` = mean verifier score."""
    from olmoflow.posttrain.pairs import prompt_messages
    from olmoflow.posttrain.verifiers import verify

    kw = _chat_kw({"max_gen_toks": task.max_gen_toks, "temperature": task.temperature, "top_p": task.top_p,
                   "seed": seed})
    reqs = [(_chat_prompt(prompt_messages(d, d["id"]), d.get("tools")), kw) for d in docs]
    outs = lm.generate_until(reqs, progress)
    scores: dict[str, list[float]] = {"accuracy": [], "score": []}
    items = []
    for d, out in zip(docs, outs):
        value, reason = verify(d, out)
        if value is None:
            raise OlmoflowError(f"chat item {d['id']}: {reason} (give it 'answer', 'constraints', 'call', ... "
                                "or a 'verifier' name)")
        scores["accuracy"].append(float(value >= 1.0))
        scores["score"].append(value)
        items.append(_with_subject({"id": d["id"], "output": out, "score": value, "reason": reason}, d))
    return aggregate(scores, docs), items


def run_ppl(task, lm, docs, pool, seed, progress):
    """Each document scored on its own (rolling windows); bits per byte and perplexity per source.

    ``bits_per_byte`` is the macro average over sources (Paloma reports sources separately).
    """
    res = lm.loglikelihood_rolling([d["text"] for d in docs], progress)
    by_src: dict[str, list[tuple[float, int, int]]] = defaultdict(list)
    items = []
    for d, (ll, ntok) in zip(docs, res):
        nbytes = len(d["text"].encode("utf-8"))
        by_src[d["source"]].append((ll, ntok, nbytes))
        items.append({"id": d["id"], "source": d["source"], "loglikelihood": ll, "n_tokens": ntok, "n_bytes": nbytes,
                      "bits_per_byte": bits_per_byte(ll, nbytes)})
    metrics: dict[str, float] = {}
    for src in sorted(by_src):
        rows = by_src[src]
        ll = sum(r[0] for r in rows)
        metrics[f"bits_per_byte/{src}"] = bits_per_byte(ll, sum(r[2] for r in rows))
        metrics[f"perplexity/{src}"] = math.exp(-ll / max(1, sum(r[1] for r in rows)))
    metrics["bits_per_byte"] = mean([v for k, v in metrics.items() if k.startswith("bits_per_byte/")])
    return metrics, items
