"""Evaluation tasks: what is asked (documents), in which format, with which few-shot examples.

A task spec on the command line is one of

- a registered name: ``arc_easy``, ``arc_easy:mc``, ``hellaswag``, ``piqa``, ``sciq``,
  ``openbookqa``, ``arc_challenge``, ``mmlu`` (all subjects) or ``mmlu_<subject>``, ``gsm8k``,
  ``minerva_math_500``, ``minerva_math`` (7 subsets) or ``minerva_math_<subset>``,
  ``humaneval``, ``arith_gen`` / ``arith_rc`` / ``arith_mc`` (see ``list_tasks()``);
  tasks made of subjects report macro averages over them (``runners.aggregate``);
  ``NAME:rc`` / ``NAME:mc`` picks the OLMES format of a multiple-choice task, ``NAME:Nshot``
  overrides the shot count (``arc_easy:mc:0shot``);
- a local JSONL file ``FORMAT:PATH`` with FORMAT one of ``rc``, ``mc``, ``gen``, ``ppl``,
  ``code``, or a bare ``PATH.jsonl`` whose format is read from the first line's fields
  (docs/eval.md gives the schemas);
- ``arith_gen:PATH`` etc. for an arithmetic file written by the data stage (``math_eval.jsonl``);
- a long-context task generated at a length, ``passkey:512[:TOKENIZER_DIR]`` (also
  ``niah_multikey``, ``variable_tracking``, ``common_words``, ``passkey_choice``,
  ``niah_multikey_choice``; ``olmoflow.eval.ruler``).

Formats (OLMES): ``rc`` scores every answer as a cloze continuation (raw, per-token, per-char
and PMI normalisations), ``mc`` lists the answers with letters and scores `` A``, `` B``, …;
``gen`` generates until a stop sequence and extracts the answer (last number or last
``\\boxed{}``); ``code`` samples completions and runs the tests in the sandbox (pass@k);
``ppl`` scores each document on its own (bits per byte per source).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from olmoflow.errors import OlmoflowError
from olmoflow.io import sha256_bytes

__all__ = ["Task", "get_task", "list_tasks", "register", "fewshot_examples", "LETTERS"]

Kind = Literal["rc", "mc", "gen", "ppl", "code", "chat"]
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

Loader = Callable[[], tuple[list[dict[str, Any]], list[dict[str, Any]]]]


@dataclass
class Task:
    """One evaluation task. ``load()`` returns ``(eval_docs, fewshot_pool)``.

    Docs are plain dicts, normalised by the loaders:
    rc/mc: ``id, question, choices, gold`` (+ optional ``query`` = the item's full cloze prompt);
    gen: ``id, prompt, answer``; ppl: ``id, text, source``; code: HumanEval fields
    ``task_id, prompt, test, entry_point`` (+ ``canonical_solution``); chat: ``id, messages``
    (+ ``tools``) and the fields its verifier reads (``answer``, ``constraints``, ``call``, ...).
    """

    name: str
    kind: Kind
    loader: Loader = field(repr=False, compare=False)
    source: str = ""
    num_shots: int = 0
    fewshot_seed: int = 1234
    query_template: str = "Question: {question}\nAnswer:"
    mc_template: str = "Question: {question}{options}\nAnswer:"
    primary_metric: str = ""
    stop: list[str] = field(default_factory=list)
    max_gen_toks: int = 256
    extract: Literal["last_number", "boxed", "none"] = "last_number"
    temperature: float = 0.0
    top_p: float = 1.0
    n_samples: int = 1
    ks: list[int] = field(default_factory=lambda: [1])
    timeout_s: float = 10.0
    #: gen/code: send the (few-shot) prompt as a user turn through the chat template and generate
    #: the assistant's reply (``TASK:chat``); chat tasks always do
    chat: bool = False

    def __post_init__(self) -> None:
        if not self.primary_metric:
            self.primary_metric = {
                "rc": "acc_per_char", "mc": "acc_raw", "gen": "exact_match", "ppl": "bits_per_byte",
                "code": f"pass@{self.ks[0]}", "chat": "accuracy",
            }[self.kind]

    def load(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return self.loader()

    def config(self) -> dict[str, Any]:
        """Everything that defines the task's numbers (the loader is named by ``source``)."""
        d = asdict(self)
        d.pop("loader", None)
        return d

    def config_hash(self) -> str:
        return sha256_bytes(json.dumps(self.config(), sort_keys=True).encode())[:16]

    def query(self, doc: dict[str, Any]) -> str:
        """The cloze prompt of an rc item (ends right before the answer)."""
        return doc.get("query") or self.query_template.format(question=doc["question"])

    def mc_query(self, doc: dict[str, Any]) -> str:
        """The multiple-choice prompt (``mc_template``): question, lettered options, ``Answer:``."""
        opts = "".join(f"\n {LETTERS[i]}. {c}" for i, c in enumerate(doc["choices"]))
        return self.mc_template.format(question=doc["question"], options=opts)


# ---------------------------------------------------------------------------------- few-shot
def fewshot_examples(task: Task, pool: list[dict[str, Any]], doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The task's fixed few-shot examples for ``doc``: the same seeded sample for every item,
    skipping the item itself when the pool is the evaluation set. Items with a ``subject``
    (MMLU) take their shots from the pool entries of the same subject, as lm-eval and OLMES do,
    so ``mmlu`` prompts an item exactly as ``mmlu_<subject>`` does."""
    k = task.num_shots
    if k <= 0 or not pool:
        return []
    if doc.get("subject") is not None:
        same = [p for p in pool if p.get("subject") == doc["subject"]]
        pool = same or pool
    rng = random.Random(task.fewshot_seed)
    order = rng.sample(range(len(pool)), min(len(pool), k + 1))
    key = _doc_key(doc)
    shots = [pool[i] for i in order if _doc_key(pool[i]) != key]
    return shots[:k]


def _doc_key(doc: dict[str, Any]) -> str:
    return json.dumps(doc, sort_keys=True, default=str)


def fewshot_prefix(task: Task, shots: list[dict[str, Any]]) -> str:
    """Rendered shots (each followed by a blank line) for rc/mc/gen tasks."""
    parts = []
    for s in shots:
        if task.kind == "rc":
            parts.append(f"{task.query(s)} {s['choices'][s['gold']]}")
        elif task.kind == "mc":
            parts.append(f"{task.mc_query(s)} {LETTERS[s['gold']]}")
        elif task.kind == "gen":
            parts.append(f"{s['prompt']} {s.get('solution') or s['answer']}")
    return "".join(p + "\n\n" for p in parts)


# ---------------------------------------------------------------------------------- registry
_REGISTRY: dict[str, Callable[[], Task]] = {}


def register(name: str) -> Callable[[Callable[[], Task]], Callable[[], Task]]:
    """Decorator: register a zero-argument task factory under ``name``."""

    def deco(fn: Callable[[], Task]) -> Callable[[], Task]:
        _REGISTRY[name] = fn
        return fn

    return deco


def list_tasks() -> list[str]:
    """Names of the registered tasks (MMLU subjects appear as ``mmlu_<subject>``)."""
    from olmoflow.eval import loaders  # noqa: F401  (registers the built-ins)

    return sorted(_REGISTRY)


_SHOT_RE = re.compile(r"^(\d+)shot$")
_FILE_KINDS = ("rc", "mc", "gen", "ppl", "code", "chat")


def get_task(spec: str) -> Task:
    """Resolve a task spec (see the module docstring); OlmoflowError with the known names if unknown."""
    from olmoflow.eval import loaders

    spec = spec.strip()
    if not spec:
        raise OlmoflowError("empty task name")
    head, _, rest = spec.partition(":")
    # local files: FORMAT:PATH or PATH.jsonl, optionally followed by :Nshot
    shots = re.search(r":(\d+)shot$", spec)
    base = spec[: shots.start()] if shots else spec
    bhead, _, brest = base.partition(":")
    file_task = None
    if bhead in _FILE_KINDS and brest:
        file_task = loaders.jsonl_task(brest, kind=bhead)
    elif base.endswith((".jsonl", ".jsonl.gz")) and bhead not in _REGISTRY and not bhead.startswith("arith"):
        file_task = loaders.jsonl_task(base, kind=None)
    if file_task is not None:
        if shots:
            file_task = replace(file_task, num_shots=int(shots.group(1)), name=f"{file_task.name}:{shots.group(0)[1:]}")
        return file_task
    # arithmetic from a file: arith_gen:PATH
    first = rest.split(":")[0]
    looks_like_file = rest.endswith((".jsonl", ".jsonl.gz", ".json")) or "/" in rest
    if head.startswith("arith_") and rest and looks_like_file and not _SHOT_RE.match(first) and first not in ("rc", "mc"):
        return loaders.arith_task(head, path=rest)
    from olmoflow.eval.ruler import TASK_NAMES, ruler_task

    if head in TASK_NAMES:  # long-context tasks generated at a length: passkey:512[:TOKENIZER_DIR]
        return ruler_task(spec)
    names = list_tasks()
    if head not in _REGISTRY:
        close = [n for n in names if head.split("_")[0] in n][:8]
        hint = f" (did you mean: {', '.join(close)}?)" if close else ""
        raise OlmoflowError(
            f"unknown task {spec!r}{hint}; run 'olmoflow eval --list-tasks' for all names, or pass FORMAT:PATH.jsonl"
        )
    task = _REGISTRY[head]()
    for mod in [m for m in rest.split(":") if m]:
        if mod in ("rc", "mc"):
            if task.kind not in ("rc", "mc"):
                raise OlmoflowError(f"task {head!r} is {task.kind}; ':{mod}' applies to multiple-choice tasks only")
            task = replace(task, kind=mod, name=f"{head}:{mod}", primary_metric="")
            task.__post_init__()
        elif mod == "chat":
            if task.kind not in ("gen", "code"):
                raise OlmoflowError(f"task {head!r} is {task.kind}; ':chat' applies to generative tasks only")
            task = replace(task, chat=True, name=f"{task.name}:chat")
        elif m := _SHOT_RE.match(mod):
            task = replace(task, num_shots=int(m.group(1)), name=f"{task.name}:{mod}")
        else:
            raise OlmoflowError(f"task {spec!r}: unknown modifier {mod!r} (use rc, mc, chat or Nshot)")
    return task
