"""A planted document is traced back through mix, tokenize and curate to its raw input file and line,
with the curation record that kept it (steps, quality, dedup clusters, upsampling, mix repeats); the
``trace_index`` flow stage builds the index and reports a traced sample."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from traceutil import prose, words

from olmoflow.io import iter_jsonl

PLANTED = ("Mirelda quoventh sparrowgate lintabble oorvane pellinax dromesh sculvary. The tessaline gorvath "
           "brimmeld kandoval sipprath ulvenor. Nine quillasted marrowind fenneth castrovel wimbleton drabs. "
           "Seven zanterly hobbarn voskitch plumweather gandril oxtane. Ever the mournsky pellith "
           "trovanshire ibberling haskwell.")


@pytest.fixture(scope="module")
def flow(tmp_path_factory) -> dict:
    from olmoflow.data.curate import curate
    from olmoflow.data.mix import mix
    from olmoflow.data.tokenize import tokenize
    from olmoflow.tokenizer.train import train_tokenizer
    from olmoflow.trace import build_index

    root = tmp_path_factory.mktemp("lineage")
    r = random.Random(3)
    vb = words(400, 2)
    raw = root / "raw"
    raw.mkdir()
    a = [json.dumps({"id": f"a{i}", "text": prose(r, vb, 6), "source": "web"}) for i in range(40)]
    a.insert(2, "")  # a blank line: line numbers are the file's, not record indices
    a.insert(6, json.dumps({"id": "planted-1", "text": PLANTED, "source": "web"}))  # line 7
    b = [json.dumps({"id": f"b{i}", "text": prose(r, vb, 6), "source": "web"}) for i in range(40)]
    b.insert(5, json.dumps({"id": "planted-copy", "text": PLANTED, "source": "web"}))  # exact duplicate
    b.insert(9, json.dumps({"id": "planted-near", "text": PLANTED + " Indeed so.", "source": "web"}))
    (raw / "a.jsonl").write_text("\n".join(a) + "\n")
    (raw / "b.jsonl").write_text("\n".join(b) + "\n")
    (root / "pos.jsonl").write_text(json.dumps({"id": "p", "text": PLANTED, "source": "web"}) + "\n")
    (root / "neg.jsonl").write_text(json.dumps({"id": "n", "text": prose(r, vb, 6), "source": "web"}) + "\n")
    recipe = {"name": "lineage", "steps": [
        {"step": "normalize"}, {"step": "exact_dedup"}, {"step": "minhash_dedup"},
        {"step": "quality", "positive": [str(root / "pos.jsonl")], "negative": [str(root / "neg.jsonl")]},
        {"step": "upsample", "drop_fraction": 0.0, "min_repeat": 1.0, "max_repeat": 3.0, "buckets": 4},
    ]}
    curate(raw, root / "cur", recipe=recipe, workers=1, quiet=True)
    train_tokenizer([root / "cur" / "documents"], root / "tok", vocab_size=600, quiet=True)
    tokenize(root / "cur", root / "tok", root / "tokens", workers=1, quiet=True)
    n = json.loads((root / "tokens" / "meta.json").read_text())["n_tokens"]
    mix({"web": root / "tokens"}, root / "mix", tokens={"web": 2 * n + 500}, quiet=True)
    build_index([root / "mix"], root / "idx", curation=[root / "cur"], quiet=True)
    return {"root": root, "raw": raw}


def test_curation_records_written_for_kept_documents(flow):
    recs = {rec["id"]: rec for f in sorted((flow["root"] / "cur" / "curation").glob("*.jsonl.gz"))
            for rec in iter_jsonl(f)}
    kept = {rec["id"] for f in sorted((flow["root"] / "cur" / "documents").glob("*.jsonl.gz"))
            for rec in iter_jsonl(f) if "#rep" not in rec["id"]}
    assert set(recs) == kept and "planted-copy" not in recs and "planted-near" not in recs
    rec = recs["b10"]  # an ordinary document: its own line (b.jsonl has two planted lines before it)
    assert rec["raw"] == {"file": str(flow["raw"] / "b.jsonl"), "line": 13}
    assert "dedup" not in rec and rec["upsample"] >= 1


def test_planted_document_traced_to_raw_line_and_curation_record(flow):
    from olmoflow.trace import TraceIndex, trace_text

    ix = TraceIndex.open(flow["root"] / "idx")
    sentence = PLANTED.split(". ")[1] + "."
    res = trace_text(ix, "So " + sentence, fraction=1.0)
    [span] = res["spans"]
    assert span["text"] == sentence
    [doc] = span["documents"]
    assert doc["doc_id"] == "planted-1"
    cur = doc["curation"]
    assert cur["raw"] == {"file": str(flow["raw"] / "a.jsonl"), "line": 7}
    assert cur["steps"] == ["normalize", "exact_dedup", "minhash_dedup", "quality", "upsample"]
    assert cur["dedup"] == {"exact_dedup": 2, "minhash_dedup": 2}  # + its copy, then + its near-duplicate
    assert 0 <= cur["quality"]["score"] <= 1 and cur["quality"]["bucket"] in range(4)
    # upsampling wrote planted-1 and its #rep copies; the mix repeated each; the index holds it once
    mixed = [rec for rec in iter_jsonl(flow["root"] / "mix" / "web-00000.docs.jsonl")
             if rec["id"].split("#")[0] == "planted-1"]
    copies = {rec["id"] for rec in mixed}
    assert len(copies) == cur["upsample"]
    assert cur["mix"]["repeats"] == doc["repeats"] == len(mixed)
    assert cur["mix"]["dataset"] == str(flow["root"] / "mix")
    assert ix.count(ix.tokenizer.encode(" " + sentence).ids) == 1


def test_trace_index_stage_and_report_section(flow, tmp_path):
    from olmoflow.flow.registry import StageContext, get_stage_type
    from olmoflow.flow.stages.trace_index import traced_sample_section

    st = get_stage_type("trace_index")
    cfg = st.typed_config(st.resolve_config({"sample_text": "Well. " + PLANTED.split(". ")[2] + ".",
                                             "fraction": 1.0}))
    out = tmp_path / "trace_index"
    out.mkdir()
    ctx = StageContext(stage="trace_index", seed=0, workdir=tmp_path, quiet=True)
    metrics = st.fn(cfg, {"data": flow["root"] / "mix", "curation": flow["root"] / "cur"}, out, ctx)
    assert metrics["docs_with_curation"] == metrics["n_docs"] and metrics["sample_spans"] == 1
    sample = json.loads((out / "traced_sample.json").read_text())
    assert sample["spans"][0]["documents"][0]["doc_id"] == "planted-1"

    class Art:
        name, dir = "trace_index", out

    md = "\n".join(traced_sample_section([Art()], tmp_path))
    assert "**Nine quillasted" in md and "`planted-1`" in md and f"{flow['raw'] / 'a.jsonl'}:7" in md


def test_index_without_curation_dir_records(tmp_path, flow):
    from olmoflow.errors import OlmoflowError
    from olmoflow.trace import build_index

    with pytest.raises(OlmoflowError, match="no curation records"):
        build_index([flow["root"] / "mix"], tmp_path / "idx", curation=[Path(flow["raw"])], quiet=True)


def test_trace_index_stage_reports_an_untraceable_sample(flow, tmp_path):
    """A weak model may generate only whitespace: the stage still builds the index and the report says so."""
    from olmoflow.flow.registry import StageContext, get_stage_type
    from olmoflow.flow.stages.trace_index import traced_sample_section

    st = get_stage_type("trace_index")
    out = tmp_path / "ti"
    out.mkdir()
    ctx = StageContext(stage="trace_index", seed=0, workdir=tmp_path, quiet=True)
    metrics = st.fn(st.typed_config(st.resolve_config({"sample_text": " \n "})), {"data": flow["root"] / "mix"},
                    out, ctx)
    assert metrics["sample_spans"] == 0 and metrics["docs_with_curation"] == 0

    class Art:
        name, dir = "ti", out

    assert "nothing to trace" in "\n".join(traced_sample_section([Art()], tmp_path))


def test_sft_conversations_indexed_and_traced_to_their_line(flow, tmp_path):
    """The stage's ``sft`` input: conversations are indexed as SFT tokenizes them; a reproduced answer is
    traced to its conversation and the line of the chat file it came from."""
    from olmoflow.flow.registry import StageContext, get_stage_type
    from olmoflow.trace import TraceIndex, trace_text

    answer = "The quindle of Pellmar is always seven marrowinds across the fenneth valley."
    chats = tmp_path / "sft.jsonl"
    rows = [{"id": f"c{i}", "messages": [{"role": "user", "content": f"Question {i}?"},
                                         {"role": "assistant", "content": f"Answer {i} is kato."}]} for i in range(5)]
    rows.insert(3, {"id": "quindle", "messages": [{"role": "user", "content": "How wide is Pellmar?"},
                                                  {"role": "assistant", "content": answer}]})
    chats.write_text("".join(json.dumps(r) + "\n" for r in rows))
    st = get_stage_type("trace_index")
    out = tmp_path / "ti"
    out.mkdir()
    ctx = StageContext(stage="trace_index", seed=0, workdir=tmp_path, quiet=True)
    st.fn(st.typed_config(st.resolve_config({"sample_prompt": ""})),
          {"data": flow["root"] / "mix", "curation": flow["root"] / "cur", "sft": chats,
           "tokenizer": flow["root"] / "tok"}, out, ctx)
    ix = TraceIndex.open(out / "index")
    [span] = trace_text(ix, answer, fraction=1.0)["spans"]  # (an answer starts a line, as in the chat)
    assert span["text"] == answer
    [doc] = span["documents"]
    assert doc["doc_id"] == "quindle" and doc["source"] == "sft"
    assert doc["curation"]["raw"] == {"file": str(chats), "line": 4}
    assert any(ix.record(i)["id"] == "planted-1" for i in range(ix.n_docs))  # the pretraining data is there too
