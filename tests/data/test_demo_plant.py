"""The demo corpus can be contaminated on purpose, and curation's decontamination removes exactly the
planted documents (the decontamination claim of flows/claims.yaml)."""

from __future__ import annotations

from olmoflow.data.curate import curate
from olmoflow.data.demo import build_demo_corpus
from olmoflow.io import read_jsonl


def test_planted_eval_items_are_found_and_removed(tmp_path):
    res = build_demo_corpus(tmp_path / "docs", seed=0, max_docs_per_source=20, n_math=40, n_math_eval=30,
                            max_code_files=5, plant_eval_items=4)
    math = read_jsonl(res["files"]["math"])
    planted = [d for d in math if d["id"].startswith("math/planted-")]
    assert len(planted) == 4 and math[:4] == planted  # first: the last docs of a source are held out
    evals = read_jsonl(res["eval"])
    assert all(f"{e['question']} The answer is {e['answer']}." in d["text"] for d, e in zip(planted, evals))
    out = curate(res["files"]["math"], tmp_path / "out", recipe={"name": "decon", "steps": [{"step": "decontaminate"}]},
                 decontaminate=[res["eval"]], workers=1, quiet=True)
    decon = out["decontamination"]
    assert sorted(r["id"] for r in decon["removed_docs"]) == [d["id"] for d in planted]
    assert sorted(decon["items"]) == [f"math_eval:math_eval-{i:04d}" for i in range(4)]  # file:item id
    clean = build_demo_corpus(tmp_path / "clean", seed=0, max_docs_per_source=20, n_math=40, n_math_eval=30,
                              max_code_files=5)
    assert read_jsonl(clean["files"]["math"]) == math[4:]  # planting adds documents, changes none
