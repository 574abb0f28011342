"""Harness behaviour: batch-size invariance, native == HF, formats, provenance, determinism."""

from __future__ import annotations

import json

import pytest

from olmoflow.eval.evaluator import evaluate, load_model_and_tokenizer
from olmoflow.eval.lm import HarnessLM, rolling_windows
from olmoflow.eval.tasks import get_task

TASKS = ["arith_rc", "arith_mc"]


def test_batch_size_invariance(hf_model, mc_file):
    """Batch sizes 1, 3 and 16 give bit-identical scores, request by request."""
    model, tok = load_model_and_tokenizer(hf_model)
    pairs = [(f"Question: What is {i} + {2 * i}?\nAnswer:" + " so" * (i % 9), f" {3 * i} apples") for i in range(14)]
    pairs += [("", "A single continuation"), ("Context with trailing space ", "x")]
    texts = ["short doc", "a much longer document " * 60]
    runs = []
    for bs in (1, 3, 16):
        lm = HarnessLM(model, tok, batch_size=bs)
        runs.append((lm.loglikelihood(pairs), lm.loglikelihood_rolling(texts)))
    assert runs[0] == runs[1] == runs[2]
    res = [evaluate(hf_model, [f"rc:{mc_file}", "arith_mc"], limit=6, batch_size=bs, quiet=True)["tasks"]
           for bs in (1, 3, 16)]
    for name in res[0]:
        assert res[0][name]["items"] == res[1][name]["items"] == res[2][name]["items"]
        assert res[0][name]["metrics"] == res[1][name]["metrics"] == res[2][name]["metrics"]


def test_batch_size_invariance_with_short_continuations(toy_tok):
    """One- and two-token continuations: the LM head then needs only a few positions per row, and
    the scores must still not depend on which requests share the batch (the few-row GEMM kernels
    round differently for different row counts)."""
    import torch

    from olmoflow.model import Olmo, get_preset
    from olmoflow.tokenizer.tok import Tok

    tok = Tok.from_dir(toy_tok)
    torch.manual_seed(0)
    model = Olmo(get_preset("tiny-1m", vocab_size=max(512, tok.vocab_size))).eval()
    # contexts of every length mod the 32-token padding: some rows end right at their padded width
    pairs = [("Question:" + " so" * j + "\nAnswer:", c) for j in range(40) for c in (" A", " no")]
    runs = [HarnessLM(model, tok, batch_size=bs).loglikelihood(pairs) for bs in (1, 2, 3, 5, 16)]
    assert all(r == runs[0] for r in runs[1:])


def test_native_checkpoint_scores_like_its_hf_export(hf_model, native_model, mc_file):
    a = evaluate(hf_model, [f"rc:{mc_file}"], quiet=True)["tasks"]
    b = evaluate(native_model, [f"rc:{mc_file}"], quiet=True)["tasks"]
    la = [v for x in next(iter(a.values()))["items"] for v in x["loglikelihoods"]]
    lb = [v for x in next(iter(b.values()))["items"] for v in x["loglikelihoods"]]
    assert la == pytest.approx(lb, abs=1e-5)


def test_results_file_has_provenance_and_is_deterministic(hf_model, tmp_path):
    out1, out2 = tmp_path / "a.json", tmp_path / "b.json"
    evaluate(hf_model, TASKS + ["arith_gen"], limit=4, out=out1, quiet=True)
    evaluate(hf_model, TASKS + ["arith_gen"], limit=4, out=out2, quiet=True)
    assert out1.read_bytes() == out2.read_bytes()
    res = json.loads(out1.read_text())
    assert res["model"]["path"] == str(hf_model) and len(res["model"]["weights_sha256"]) == 64
    assert res["seed"] == 0
    for name in TASKS + ["arith_gen"]:
        t = res["tasks"][name]
        assert t["n_items"] == 4 and len(t["items"]) == 4 and len(t["config_hash"]) == 16
        assert t["primary_metric"] in t["metrics"]
    gen_item = res["tasks"]["arith_gen"]["items"][0]
    assert {"output", "extracted", "answer", "correct"} <= set(gen_item)


def test_rc_normalisations_and_pmi_follow_definitions(hf_model, mc_file):
    r = evaluate(hf_model, [f"rc:{mc_file}"], quiet=True)["tasks"][f"rc:{mc_file.name}"]
    lines = [json.loads(x) for x in mc_file.read_text().splitlines()]
    for item, doc in zip(r["items"], lines):
        ll, unc, ntok = item["loglikelihoods"], item["unconditional"], item["n_tokens"]
        best = lambda xs: max(range(len(xs)), key=lambda i: (xs[i], -i))  # noqa: E731
        assert item["pred"]["raw"] == best(ll)
        assert item["pred"]["per_token"] == best([a / n for a, n in zip(ll, ntok)])
        assert item["pred"]["per_char"] == best([a / (len(c) + 1) for a, c in zip(ll, doc["choices"])])
        assert item["pred"]["pmi"] == best([a - u for a, u in zip(ll, unc)])


def test_fewshot_selection_is_fixed_and_excludes_the_item():
    t = get_task("arith_rc")
    docs, pool = t.load()
    from olmoflow.eval.tasks import fewshot_examples

    s1 = fewshot_examples(t, pool, docs[0])
    assert s1 == fewshot_examples(get_task("arith_rc"), pool, docs[5]) and len(s1) == t.num_shots
    self_pool = [{"id": str(i), "question": f"q{i}", "choices": ["a", "b"], "gold": 0} for i in range(10)]
    for d in self_pool:
        assert d not in fewshot_examples(t, self_pool, d)
    assert get_task("arith_rc:0shot").num_shots == 0


def test_rolling_windows_cover_every_token_once():
    toks = list(range(100, 1100))
    wins = rolling_windows(toks, prefix=0, max_len=128)
    assert sum(len(t) for _, t in wins) == len(toks)
    assert [x for _, t in wins for x in t] == toks
    assert all(len(i) <= 128 for i, _ in wins)


def test_perplexity_per_source_scores_documents_separately(hf_model, tmp_path):
    docs = [{"id": "a", "text": "The sun is a star.", "source": "web"},
            {"id": "b", "text": "def add(a, b):\n    return a + b", "source": "code"},
            {"id": "c", "text": "Rocks are hard. " * 60, "source": "web"}]
    p = tmp_path / "ppl.jsonl"
    p.write_text("".join(json.dumps(d) + "\n" for d in docs))
    r = evaluate(hf_model, [f"ppl:{p}"], quiet=True)["tasks"][f"ppl:{p.name}"]
    assert set(r["metrics"]) >= {"bits_per_byte/web", "bits_per_byte/code", "perplexity/web", "bits_per_byte"}
    # a document's score does not depend on which other documents are in the file
    alone = tmp_path / "alone.jsonl"
    alone.write_text(json.dumps(docs[1]) + "\n")
    r2 = evaluate(hf_model, [f"ppl:{alone}"], quiet=True)["tasks"][f"ppl:{alone.name}"]
    assert r2["items"][0]["loglikelihood"] == r["items"][1]["loglikelihood"]
    assert r2["metrics"]["bits_per_byte/code"] == r["metrics"]["bits_per_byte/code"]


def test_shared_prefix_scoring_agrees_with_plain_path(hf_model):
    """The KV-cache path (one context forward per item) matches the plain path, including
    contexts longer than the 64-token sliding window and single-token (MC letter) answers."""
    model, tok = load_model_and_tokenizer(hf_model)
    long_ctx = "Rocks are hard. The sun is a star. " * 12 + "Question: What is 12 + 7?\nAnswer:"
    assert len(tok.encode(long_ctx)) > 64
    pairs = [(long_ctx, c) for c in (" 19", " eighteen apples", " 5", " A")]
    pairs += [("Question: Which is a star?\nAnswer:", c) for c in (" A", " B", " C")]
    pairs += [("Short", " one"), ("def add(a, b):", "\n    return a + b"), ("def add(a, b):", "\n    return a - b")]
    plain = HarnessLM(model, tok, batch_size=3).loglikelihood(pairs)
    lm = HarnessLM(model, tok, batch_size=2, share_prefix=True)
    shared = lm.loglikelihood(pairs)
    assert lm.share_prefix
    for (a, ga), (b, gb) in zip(plain, shared):
        assert abs(a - b) < 1e-4 and ga == gb


def test_rolling_progress_counts_texts_not_windows(hf_model):
    """A perplexity bar has one unit per text: a text longer than the context (several windows)
    must not push the bar past its total."""
    model, tok = load_model_and_tokenizer(hf_model)
    lm = HarnessLM(model, tok, batch_size=2, max_length=16)
    texts = ["short doc", "a much longer document " * 20, "another fairly long text " * 10]
    ticks: list[int] = []
    lm.loglikelihood_rolling(texts, ticks.append)
    assert sum(ticks) == len(texts) and all(n > 0 for n in ticks)
