"""Individual steps: language ID, heuristic filters, PII, FIM, decontamination, quality + upsampling."""

from __future__ import annotations

import random

import numpy as np
import pytest
from datautil import sentence_text, vocab, write_jsonl

from olmoflow.data.stats import Stats
from olmoflow.data.steps import step_class
from olmoflow.data.steps.base import Context


def make(kind: str, **cfg):
    cls = step_class(kind)
    return cls(cls.Config.model_validate({"step": kind, **cfg}))


def run(step, docs):
    stats = Stats()
    kept = list(step.run(iter(docs), Context(stats)))
    return kept, stats.data["steps"].get(step.name, {}).get("removed", {})


ENGLISH = ("The committee met on Tuesday to discuss the new library budget. Several members argued that "
           "the reading rooms should stay open later in the evening, because students often need a quiet "
           "place to work after their classes have finished for the day.")
GERMAN = ("Der Ausschuss traf sich am Dienstag, um den neuen Haushalt der Bibliothek zu besprechen. Mehrere "
          "Mitglieder meinten, dass die Lesesäle abends länger geöffnet bleiben sollten.")


def test_langid_keeps_english_drops_german_and_skips_code():
    step = make("langid", skip_sources=["code"])
    docs = [{"id": "en", "text": ENGLISH, "source": "web"}, {"id": "de", "text": GERMAN, "source": "web"},
            {"id": "py", "text": "def f(x):\n    return x\n", "source": "code"}]
    kept, removed = run(step, docs)
    assert [d["id"] for d in kept] == ["en", "py"]
    assert kept[0]["attributes"]["langid_english"] >= 0.65
    assert removed == {"lang_english_below_0.65": 1}


def test_gopher_and_fineweb_filters():
    r = random.Random(0)
    good = ENGLISH + (" After a long debate, the chair proposed a compromise: the east wing would stay open until "
                      "ten on weekdays, while the west wing would close at the usual hour. Most members "
                      "supported the plan, and the meeting ended shortly before noon.")
    short = "Too short to be a document."
    symbols = " ".join(["# heading ..."] * 40)
    repeated = "\n".join(["Buy cheap watches now, best price in town!"] * 30)
    kept, removed = run(make("gopher_quality"), [
        {"id": "good", "text": good}, {"id": "short", "text": short}, {"id": "sym", "text": symbols}])
    assert [d["id"] for d in kept] == ["good"]
    assert set(removed) == {"gopher_short_doc", "gopher_symbol_ratio"}
    kept, removed = run(make("gopher_repetition"), [{"id": "good", "text": good}, {"id": "rep", "text": repeated}])
    assert [d["id"] for d in kept] == ["good"] and sum(removed.values()) == 1
    kept, removed = run(make("fineweb"), [{"id": "good", "text": good}, {"id": "rep", "text": repeated}])
    assert [d["id"] for d in kept] == ["good"]
    kept, _ = run(make("gopher_quality", min_words=5), [{"id": "short", "text": short}])
    assert [d["id"] for d in kept] == ["short"]  # thresholds are configurable: removed above, kept here
    words = vocab(200)
    doc = sentence_text(r, words, 100)
    kept, removed = run(make("dclm_sentences"), [{"id": "ok", "text": doc}, {"id": "few", "text": "One. Two."}])
    assert [d["id"] for d in kept] == ["ok"] and removed == {"too_few_sentences": 1}


def test_c4_filter_drops_lorem_ipsum():
    kept, removed = run(make("c4"), [{"id": "l", "text": "Lorem ipsum dolor sit amet. " * 5},
                                     {"id": "ok", "text": ENGLISH + " It was agreed. The vote was close. It passed."}])
    assert [d["id"] for d in kept] == ["ok"] and removed == {"c4_lorem_ipsum": 1}


def test_pii_masks_emails_phones_ips_but_not_versions():
    text = ("Mail a.b-c@mail.example.org, call +1 415-555-0199 or (212) 555 0100. Host 10.0.0.1. "
            "Python 3.11.7 and version 1.2.3.4.5 stay.")
    kept, _ = run(make("pii"), [{"id": "x", "text": text}])
    out = kept[0]["text"]
    assert out.count("|||EMAIL_ADDRESS|||") == 1 and out.count("|||PHONE_NUMBER|||") == 2
    assert out.count("|||IP_ADDRESS|||") == 1 and "3.11.7" in out and "1.2.3.4.5" in out
    assert kept[0]["attributes"]["pii"] == {"email": 1, "ip": 1, "phone": 2}


def test_fim_rate_and_reconstruction():
    from olmoflow.data.steps.fim import FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX

    docs = [{"id": f"c{i}", "text": f"def f{i}(x):\n    return x + {i}\n", "source": "code"} for i in range(400)]
    originals = {d["id"]: d["text"] for d in docs}
    kept, _ = run(make("fim", rate=0.3, sources=["code"]), [dict(d) for d in docs])
    fim = [d for d in kept if d["text"].startswith(FIM_PREFIX)]
    assert 0.22 < len(fim) / len(docs) < 0.38
    for d in fim:
        body = d["text"][len(FIM_PREFIX):]
        prefix, rest = body.split(FIM_SUFFIX)
        suffix, middle = rest.split(FIM_MIDDLE)
        assert prefix + middle + suffix == originals[d["id"]]
    again, _ = run(make("fim", rate=0.3, sources=["code"]), [dict(d) for d in docs])
    assert [d["text"] for d in again] == [d["text"] for d in kept]


def test_decontamination_index_long_and_short_items(tmp_path):
    from olmoflow.data.steps.decontaminate import EvalIndex

    long_q = "Maya buys seven boxes of pencils and each box holds twelve pencils so how many pencils in total"
    items = [("e:1", long_q), ("e:2", "What is 17 times 23?"), ("e:3", "Name the capital of France.")]
    idx = EvalIndex(items)
    assert idx.match("Intro text. " + long_q + " The end.", 0.8) == [("e:1", 1.0)]
    # most of the item (>= 80% of IDF weight) still counts; a fragment does not
    words = long_q.split()
    assert idx.match(" ".join(words[:-2]), 0.8)[0][0] == "e:1"
    assert idx.match(" ".join(words[:8]), 0.8) == []
    # short items: near-verbatim (case/punctuation) only
    assert idx.match("quiz: WHAT is 17 times 23 ?? answer 391", 0.8) == [("e:2", 1.0)]
    assert idx.match("what is 17 times 24", 0.8) == []
    assert idx.match("name the capital of france", 0.8) == [("e:3", 1.0)]


def test_quality_classifier_and_upsampling(tmp_path):
    r = random.Random(0)
    good_words, bad_words = vocab(300, seed=2), vocab(300, seed=3)
    pos = [{"id": f"p{i}", "text": sentence_text(r, good_words, 60)} for i in range(200)]
    neg = [{"id": f"n{i}", "text": sentence_text(r, bad_words, 60)} for i in range(200)]
    write_jsonl(tmp_path / "pos.jsonl", pos)
    write_jsonl(tmp_path / "neg.jsonl", neg)
    q = make("quality", positive=[str(tmp_path / "pos.jsonl")], negative=[str(tmp_path / "neg.jsonl")])
    q.prepare(str(tmp_path))
    stats = Stats()
    ctx = Context(stats, workdir=str(tmp_path))
    mixed = [{"id": f"m{i}", "source": "prose",
              "text": sentence_text(r, good_words if i % 2 else bad_words, 60)} for i in range(100)]
    scored = list(q.run(iter(mixed), ctx))
    scores = np.array([d["attributes"]["quality_score"] for d in scored])
    assert scores[1::2].mean() > 0.8 and scores[::2].mean() < 0.2

    up = make("upsample", sources=["prose"])
    summary = up.collect(iter(scored), ctx)
    dec = up.decide([summary], ctx)[0]
    out = list(up.apply(iter(scored), dec, ctx))
    by_id: dict[str, int] = {}
    for d in out:
        base = d["id"].split("#")[0]
        by_id[base] = by_id.get(base, 0) + 1
    order = np.argsort(scores, kind="stable")
    ids = [scored[i]["id"] for i in order]
    assert all(i not in by_id for i in ids[:40])  # bottom 40% dropped
    assert all(by_id[i] == 7 for i in ids[95:])  # top 5% repeated 7x
    assert all(1 <= by_id[i] <= 7 for i in ids[40:])
    # repetition rises linearly with the quality vigintile: 1x at the 40th percentile -> 7x at the top
    from olmoflow.data.steps.upsample import repetition_curve

    for rank, i in enumerate(ids[40:], start=40):
        want = float(repetition_curve(np.array([rank * 20 // 100]), 20, 0.4, 1.0, 7.0)[0])
        assert np.floor(want) <= by_id[i] <= np.ceil(want), (rank, want, by_id[i])
    assert stats.data["steps"]["upsample"]["removed"]["low_quality_bucket"] == 40

    budget = make("upsample", sources=["prose"], token_budget=20_000)
    s2 = Stats()
    dec2 = budget.decide([budget.collect(iter(scored), Context(s2))], Context(s2))[0]
    out2 = list(budget.apply(iter(scored), dec2, Context(s2)))
    tokens = sum(len(d["text"].encode()) / 4 for d in out2)
    assert abs(tokens - 20_000) / 20_000 < 0.1


def test_demo_corpus_small(tmp_path):
    import json

    from olmoflow.data.demo import build_demo_corpus

    info = build_demo_corpus(tmp_path, seed=0, max_docs_per_source=40, n_math_eval=50)
    assert info["docs"] == {"code": 40, "prose": 40, "math": 40}
    math_docs = [json.loads(x) for x in open(info["files"]["math"])]
    evals = [json.loads(x) for x in open(info["eval"])]
    assert {"id", "question", "answer"} <= set(evals[0])
    train_q = {d["text"].split("\n")[0][len("Question: "):] for d in math_docs}
    assert not train_q & {e["question"] for e in evals}
    for d in math_docs:
        assert d["text"].endswith(f"The answer is {d['metadata']['answer']}.")
    assert build_demo_corpus(tmp_path / "again", seed=0, max_docs_per_source=40, n_math_eval=50)["bytes"] == info["bytes"]


def test_math_answers_are_correct():
    import re

    from olmoflow.data.demo import math_problems

    for p in math_problems(200, seed=5):
        nums = [int(x) for x in re.findall(r"\d+", p["question"])]
        a = int(p["answer"])
        t = p["template"]
        expect = {"add": lambda n: n[0] + n[1], "sub": lambda n: n[0] - n[1], "mul": lambda n: n[0] * n[1],
                  "div": lambda n: n[0] // n[1], "two_step": lambda n: n[2] - n[0] * n[1],
                  "rect": lambda n: 2 * (n[0] + n[1]), "age": lambda n: n[0] + n[1] + n[2],
                  "arith": lambda n: n[0] * n[1] + n[2]}[t](nums)
        assert a == expect, p


@pytest.mark.parametrize("fmt", ["jsonl", "jsonl.gz", "jsonl.zst", "parquet"])
def test_document_formats_roundtrip(tmp_path, fmt):
    from olmoflow.data.documents import iter_docs
    from olmoflow.data.documents import write_jsonl as wj

    docs = [{"id": str(i), "text": f"doc {i} é", "source": "s", "metadata": {"k": i}} for i in range(5)]
    path = tmp_path / f"d.{fmt}"
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(docs), path)
    else:
        wj(path, docs)
    assert list(iter_docs(path)) == docs


def test_text_file_directory_reader(tmp_path):
    from olmoflow.data.documents import expand_inputs

    src = tmp_path / "repo"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "a.py").write_text("print('a')\n")
    (src / "README.md").write_text("# readme\n")
    (src / "blob.bin").write_bytes(b"\x00\x01\x02")
    shards = expand_inputs(src)
    assert len(shards) == 1 and shards[0].kind == "text"
    recs = list(shards[0].read())
    docs = [d for d, _ in recs if d]
    bad = [b for _, b in recs if b]
    assert [d["id"] for d in docs] == ["repo/README.md", "repo/pkg/a.py"]
    assert docs[1]["metadata"]["path"] == "pkg/a.py" and docs[1]["source"] == "repo"
    assert [b["reason"] for b in bad] == ["binary_file"]


def test_hf_dataset_saved_to_disk_is_read(tmp_path):
    datasets = pytest.importorskip("datasets")
    from olmoflow.data.documents import expand_inputs

    ds = datasets.Dataset.from_dict({"id": ["a", "b"], "text": ["first doc", "second doc"], "lang": ["en", "en"]})
    ds.save_to_disk(str(tmp_path / "hfds"))
    shards = expand_inputs(tmp_path / "hfds")
    assert [s.kind for s in shards] == ["hf"]
    docs = [d for d, _ in shards[0].read()]
    assert [(d["id"], d["text"], d["metadata"]["lang"]) for d in docs] == [("a", "first doc", "en"),
                                                                          ("b", "second doc", "en")]
