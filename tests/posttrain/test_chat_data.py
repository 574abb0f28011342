"""Chat data: loss masks cover exactly the assistant tokens; bad conversations are quarantined with reasons."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from olmoflow.errors import OlmoflowError
from olmoflow.posttrain.chat_data import load_chat_examples
from olmoflow.tokenizer import Tok, apply_chat_template

CALC = {"type": "function", "function": {"name": "calculator", "description": "Evaluate arithmetic.",
                                         "parameters": {"type": "object",
                                                        "properties": {"expression": {"type": "string"}}}}}

# (record, the assistant spans written out by hand: what each assistant turn renders to + <|im_end|>)
CASES = {
    "system_multi_turn": (
        {"id": "a", "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Hi!"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "What is 2 + 2?"},
            {"role": "assistant", "content": "4."}]},
        ["Hello.<|im_end|>", "4.<|im_end|>"]),
    "think": (
        {"messages": [
            {"role": "user", "content": "What is 12 + 30?"},
            {"role": "assistant", "content": "The answer is 42.", "reasoning_content": "12 + 30 = 42."}]},
        ["<think>12 + 30 = 42.</think>The answer is 42.<|im_end|>"]),
    "tools": (
        {"id": "t", "tools": [CALC], "messages": [
            {"role": "system", "content": "Use tools."},
            {"role": "user", "content": "What is 31 * 46?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"type": "function", "function": {"name": "calculator", "arguments": {"expression": "31 * 46"}}}]},
            {"role": "tool", "content": "1426"},
            {"role": "assistant", "content": "The answer is 1426."}]},
        ['<function_calls>calculator(expression="31 * 46")</function_calls><|im_end|>',
         "The answer is 1426.<|im_end|>"]),
    "tools_default_system_string_args": (
        {"tools": [CALC], "messages": [
            {"role": "user", "content": "2*3?"},
            {"role": "assistant", "content": "Calling.", "reasoning_content": "Use the tool.", "tool_calls": [
                {"function": {"name": "calculator", "arguments": '{"expression": "2*3"}'}}]},
            {"role": "environment", "content": "6"},
            {"role": "assistant", "content": "6"}]},
        ['<think>Use the tool.</think>Calling.<function_calls>calculator(expression="2*3")</function_calls><|im_end|>',
         "6<|im_end|>"]),
}


def _write(path: Path, records: list) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
    return path


def _spans(tok: Tok, ids: np.ndarray, mask: np.ndarray) -> list[str]:
    """The decoded text of each maximal run of masked tokens."""
    out, start = [], None
    for i, m in enumerate([*mask.tolist(), False]):
        if m and start is None:
            start = i
        elif not m and start is not None:
            out.append(tok.decode(ids[start:i].tolist()))
            start = None
    return out


@pytest.fixture(scope="module")
def tok(chat_tok_dir) -> Tok:
    return Tok.from_dir(chat_tok_dir)


@pytest.fixture(scope="module")
def loaded(tok, tmp_path_factory):
    path = _write(tmp_path_factory.mktemp("chat") / "cases.jsonl", [rec for rec, _ in CASES.values()])
    return path, *load_chat_examples([path], tok, max_len=4096)


def test_mask_is_exactly_the_assistant_turns(tok, loaded):
    path, examples, report = loaded
    assert report.kept == report.total == len(CASES) and report.quarantined == {}
    for ex, (name, (rec, spans)) in zip(examples, CASES.items()):
        assert ex.ids.dtype == np.int32 and ex.mask.dtype == bool and len(ex.ids) == len(ex.mask)
        assert tok.decode(ex.ids.tolist()) == apply_chat_template(rec["messages"], rec.get("tools")), name
        assert _spans(tok, ex.ids, ex.mask) == spans, name
        # everything outside the spans is prompt: system/user/environment turns, tool specs, role headers
        outside = tok.decode(ex.ids[~ex.mask].tolist())
        assert outside.count("<|im_start|>") == len(rec["messages"]) + (bool(rec.get("tools")) and
                                                                     rec["messages"][0]["role"] != "system")
    assert [e.id for e in examples] == ["a", f"{path.name}:2", "t", f"{path.name}:4"]
    assert [e.source for e in examples] == [f"{path}:{i}" for i in range(1, 5)]
    assert report.assistant_tokens == sum(int(e.mask.sum()) for e in examples)
    assert report.tokens == sum(len(e.ids) for e in examples)


def _decoded_arguments(messages: list[dict]) -> list[dict]:
    """Tool-call arguments as objects: transformers' templates render a JSON string verbatim (ours decode it)."""
    out = json.loads(json.dumps(messages))
    for m in out:
        for call in m.get("tool_calls") or []:
            fn = call.get("function", call)
            if isinstance(fn.get("arguments"), str):
                fn["arguments"] = json.loads(fn["arguments"])
    return out


def test_mask_matches_transformers_assistant_tokens_mask(chat_tok_dir, tok, loaded):
    transformers = pytest.importorskip("transformers")
    hf = transformers.AutoTokenizer.from_pretrained(str(chat_tok_dir))
    _, examples, _ = loaded
    for ex, (name, (rec, _)) in zip(examples, CASES.items()):
        out = hf.apply_chat_template(_decoded_arguments(rec["messages"]), tools=rec.get("tools"), tokenize=True, return_dict=True,
                                     return_assistant_tokens_mask=True)
        theirs = [i for i, m in zip(out["input_ids"], out["assistant_masks"]) if m]
        assert hf.decode(theirs) == tok.decode(ex.ids[ex.mask].tolist()), name
        assert sum(out["assistant_masks"]) == int(ex.mask.sum()), name


BAD = {
    "malformed_json": '{"messages": [',
    "not_an_object": "[1, 2]",
    "empty_messages": {"messages": []},
    "unknown_role": {"messages": [{"role": "bot", "content": "x"}, {"role": "assistant", "content": "y"}]},
    "non_string_content": {"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "y"}]},
    "malformed_tool_call": {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "",
                                          "tool_calls": [{"function": {"arguments": {"a": 1}}}]}]},
    "no_assistant_turn": {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "x"}]},
    "too_long": {"messages": [{"role": "user", "content": "long " * 400}, {"role": "assistant", "content": "ok"}]},
}
MORE_BAD = [
    ("malformed_tool_call", {"messages": [{"role": "assistant", "content": "", "tool_calls": [
        {"function": {"name": "f", "arguments": "not json"}}]}]}),
    ("malformed_tool_call", {"messages": [{"role": "assistant", "content": "", "tool_calls": [
        {"function": {"name": "f", "arguments": {"bad key": 1}}}]}]}),  # renders as a call nothing can parse
    ("malformed_tool_call", {"messages": [{"role": "user", "content": "x", "tool_calls": [{"name": "f"}]},
                                          {"role": "assistant", "content": "y"}]}),
    ("non_string_content", {"messages": [{"role": "user", "content": "x"},
                                         {"role": "assistant", "content": "y", "reasoning_content": ["z"]}]}),
    ("non_string_content", {"messages": [{"role": "user", "content": None}, {"role": "assistant", "content": "y"}]}),
    ("bad_tools", {"tools": [{"description": "no name"}],
                   "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}),
    ("empty_messages", {"id": "no messages key"}),
]


def test_each_malformed_kind_is_quarantined_with_its_reason(tok, tmp_path):
    good = CASES["think"][0]
    rows = [good, *BAD.values(), *(r for _, r in MORE_BAD), good]
    path = _write(tmp_path / "mixed.jsonl", rows)
    q = tmp_path / "q" / "quarantine.jsonl"
    examples, report = load_chat_examples([path], tok, max_len=256, quarantine_path=q)
    assert len(examples) == 2 and report.kept == 2 and report.total == len(rows)
    expected: dict[str, int] = {}
    for reason in [*BAD, *(r for r, _ in MORE_BAD)]:
        expected[reason] = expected.get(reason, 0) + 1
    assert report.quarantined == dict(sorted(expected.items()))
    records = [json.loads(line) for line in q.read_text().splitlines()]
    assert [r["line"] for r in records] == list(range(2, len(rows)))
    assert [r["reason"].split(" ")[0] for r in records] == [*BAD, *(r for r, _ in MORE_BAD)]
    assert all(r["file"] == str(path) for r in records)
    too_long = records[list(BAD).index("too_long")]
    assert "> max_len 256" in too_long["reason"] and "tokens" in too_long["reason"]
    assert "'bot'" in records[list(BAD).index("unknown_role")]["reason"]
    assert report.quarantine_path == str(q)


def test_too_long_is_never_truncated(tok, tmp_path):
    rec = CASES["system_multi_turn"][0]
    n = len(load_chat_examples([_write(tmp_path / "a.jsonl", [rec])], tok, 4096)[0][0].ids)
    examples, report = load_chat_examples([_write(tmp_path / "b.jsonl", [rec, CASES["think"][0]])], tok, n - 1)
    assert report.quarantined == {"too_long": 1} and [e.id for e in examples] == ["b.jsonl:2"]
    assert len(load_chat_examples([tmp_path / "a.jsonl"], tok, n)[0][0].ids) == n  # exactly max_len fits


def test_missing_file_and_file_without_valid_conversation_name_the_file(tok, tmp_path):
    with pytest.raises(OlmoflowError, match="nope.jsonl: chat data file not found"):
        load_chat_examples([tmp_path / "nope.jsonl"], tok, 100)
    bad = _write(tmp_path / "bad.jsonl", [BAD["unknown_role"], BAD["malformed_json"]])
    q = tmp_path / "q.jsonl"
    with pytest.raises(OlmoflowError, match=r"bad.jsonl: no valid conversation \(malformed_json: 1, unknown_role: 1\)"):
        load_chat_examples([bad], tok, 100, quarantine_path=q)
    assert len(q.read_text().splitlines()) == 2  # written before the error, so the reasons can be read
    empty = _write(tmp_path / "empty.jsonl", [])
    with pytest.raises(OlmoflowError, match="empty.jsonl: no valid conversation"):
        load_chat_examples([_write(tmp_path / "ok.jsonl", [CASES["think"][0]]), empty], tok, 100)


def test_compressed_and_parquet_read_the_same_examples(tok, tmp_path):
    zstandard = pytest.importorskip("zstandard")
    pq = pytest.importorskip("pyarrow.parquet")
    pa = pytest.importorskip("pyarrow")
    # Parquet: Arrow merges struct fields across rows, so tool-call arguments are JSON strings there
    recs = [CASES["system_multi_turn"][0], CASES["think"][0], CASES["tools_default_system_string_args"][0]]
    plain = _write(tmp_path / "c.jsonl", recs)
    text = plain.read_bytes()
    (tmp_path / "c.jsonl.gz").write_bytes(gzip.compress(text))
    (tmp_path / "c.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(text))
    rows = [{"id": r.get("id"), "messages": r["messages"], "tools": r.get("tools")} for r in recs]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "c.parquet")  # (schema from the first row)
    ref, _ = load_chat_examples([plain], tok, 4096)
    for name in ("c.jsonl.gz", "c.jsonl.zst", "c.parquet"):
        got, report = load_chat_examples([tmp_path / name], tok, 4096)
        assert report.kept == 3 and report.quarantined == {}, name
        for a, b in zip(ref, got):
            assert np.array_equal(a.ids, b.ids) and np.array_equal(a.mask, b.mask), name


def test_cut_gzip_keeps_what_came_before_and_quarantines_the_damage(tok, tmp_path):
    recs = [{"messages": [{"role": "user", "content": f"What is {i} + {i * 7 % 1000}?"},
                          {"role": "assistant", "content": f"{i + i * 7 % 1000}"}]} for i in range(2000)]
    data = gzip.compress("".join(json.dumps(r) + "\n" for r in recs).encode())
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(data[: len(data) // 2])
    examples, report = load_chat_examples([cut], tok, 4096)
    assert 0 < report.kept < 2000 and report.quarantined == {"truncated_file": 1}


def test_loading_is_deterministic(tok, tmp_path, loaded):
    path, first, _ = loaded
    second, _ = load_chat_examples([path], tok, 4096)
    assert [(e.id, e.ids.tolist(), e.mask.tolist()) for e in first] == \
        [(e.id, e.ids.tolist(), e.mask.tolist()) for e in second]


def test_a_preference_record_reads_as_its_prompt_and_chosen_answer(tok, tmp_path):
    """SFT on the chosen side of DPO pairs (the delta-learning control) reads the pairs file as is."""
    prompt = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 + 3?"}]
    pair = {"id": "p1", "prompt": prompt, "chosen": {"role": "assistant", "content": "The answer is 5."},
            "rejected": {"role": "assistant", "content": "The answer is 6."}, "chosen_score": 1.0}
    trl_style = {"prompt": prompt, "chosen": [{"role": "assistant", "content": "The answer is 5."}],
                 "rejected": [{"role": "assistant", "content": "The answer is 6."}]}
    conv = {"id": "c1", "messages": [*prompt, {"role": "assistant", "content": "The answer is 5."}]}
    (a, b, c), _ = load_chat_examples(_write(tmp_path / "p.jsonl", [pair, trl_style, conv]), tok, max_len=256)
    assert a.id == "p1" and np.array_equal(a.ids, c.ids) and np.array_equal(a.mask, c.mask)
    assert np.array_equal(b.ids, c.ids) and np.array_equal(b.mask, c.mask)
    assert _spans(tok, a.ids, a.mask) == ["The answer is 5.<|im_end|>"]
