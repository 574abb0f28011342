"""Executors agree when a task fails (same one-line error locally and under Ray); a curate rerun after an
edited input reproduces a fresh run."""

from __future__ import annotations

import random

import pytest
from datautil import read_out, sentence_text, tree_bytes, vocab, write_jsonl

from olmoflow.data.curate import curate
from olmoflow.data.executors import LocalExecutor, RayExecutor
from olmoflow.data.steps.decontaminate import load_eval_items
from olmoflow.errors import OlmoflowError


@pytest.mark.slow
def test_ray_task_error_is_the_tasks_own_one_line_error(tmp_path):
    """A task that raises OlmoflowError (here: an eval file with a bad line) surfaces as that error
    under Ray, exactly as with the local pool: one line naming the file and line, not a
    RayTaskError carrying a remote traceback."""
    pytest.importorskip("ray")
    good = write_jsonl(tmp_path / "good.jsonl", [{"id": "a", "text": "what is two plus two"}])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "what is two plus two"}\n{oops\n')
    args = [([str(good)],), ([str(bad)],), ([str(good)],)]
    messages = []
    for executor in (LocalExecutor(2, quiet=True), RayExecutor(2, quiet=True)):
        with executor, pytest.raises(OlmoflowError) as err:
            executor.map(load_eval_items, args)
        messages.append((type(err.value), str(err.value)))
    assert messages[1] == messages[0]
    assert messages[0][0] is OlmoflowError and messages[0][1].startswith(f"{bad}:2: not valid JSON")


def test_rerun_after_editing_the_eval_file_decontaminates_against_the_new_items(tmp_path):
    """Rerunning a finished curate command resumes only if nothing changed; an eval set edited in
    place (same path) is a change like an edited input: the rerun must match a fresh run, not
    silently keep the documents the new items contaminate."""
    r = random.Random(0)
    words = vocab()
    docs = [{"id": f"d{i}", "text": sentence_text(r, words, 60), "source": "web"} for i in range(12)]
    inp = write_jsonl(tmp_path / "docs.jsonl", docs)
    eval_file = write_jsonl(tmp_path / "eval.jsonl", [{"id": "q", "text": sentence_text(r, words, 60)}])
    recipe = {"name": "decon", "steps": [{"step": "decontaminate"}]}
    args = dict(recipe=recipe, decontaminate=[str(eval_file)], workers=1, quiet=True)
    out = tmp_path / "out"
    assert curate(str(inp), out, **args)["accounting"]["kept"] == 12
    write_jsonl(eval_file, [{"id": "q", "text": docs[3]["text"]}])  # now d3 is contaminated
    rerun = curate(str(inp), out, **args)
    fresh = curate(str(inp), tmp_path / "fresh", **args)
    assert "d3" not in read_out(out) and rerun["accounting"]["kept"] == 11
    assert tree_bytes(out) == tree_bytes(tmp_path / "fresh")
    assert rerun["decontamination"] == fresh["decontamination"]
