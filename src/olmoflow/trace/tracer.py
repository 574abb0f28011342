"""Trace a model response back to the training data (OlmoTrace, REFERENCE.md §5).

:func:`trace_text` tokenizes the response with the index's tokenizer, finds the longest span of the
training data starting at every position, and keeps the spans a reader cares about:

1. each span is cut so it is self-contained: it does not cross a sentence or line delimiter (``\\n``, or
   ``.``/``!``/``?`` followed by space) except at its end, and it starts and ends on word boundaries;
2. spans shorter than ``min_tokens`` and spans occurring more than ``max_count`` times are dropped, and
   so is any span inside another kept span (only maximal spans remain);
3. the rarest spans by unigram probability (lowest first; counts precomputed at index time) are kept,
   about ``ceil(fraction * L)`` of them for a response of L tokens;
4. overlapping kept spans are merged; each span gets up to ``max_docs`` documents, ranked by BM25
   against prompt + response over the retrieved documents (OlmoTrace's choice of corpus), each with a
   snippet (the match located in it) and the curation record that kept it.

The result is a JSON-serialisable dict whose schema (docs/trace.md) the server's ``/v1/trace`` and the
web UI use unchanged.
"""

from __future__ import annotations

import bisect
import math
import re
import time
from collections import Counter
from typing import Any

import numpy as np

from olmoflow.errors import OlmoflowError
from olmoflow.trace.index import TraceIndex

__all__ = ["trace_text", "trace_tokens", "render_terminal", "render_markdown"]

_WORDS = re.compile(r"\w+")
#: tokens of context on each side of a match in a document snippet
SNIPPET_TOKENS = 40
#: tokens of a document (around the match) that BM25 reads
BM25_TOKENS = 2048


def _is_word(c: str) -> bool:
    return c.isalnum() or c == "_"


def _delimiters(text: str) -> list[int]:
    """Character offsets of sentence/line delimiters: newlines, and . ! ? followed by space or the end."""
    return [k for k, c in enumerate(text)
            if c == "\n" or (c in ".!?" and (k + 1 == len(text) or text[k + 1].isspace()))]


def _encode(index: TraceIndex, text: str, what: str) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids and character offsets of ``text``; refuses characters the tokenizer cannot represent."""
    tok = index.tokenizer
    enc = tok.encode(text, add_special_tokens=False)
    ids, offsets = list(enc.ids), [tuple(o) for o in enc.offsets]
    unk_token = getattr(tok.model, "unk_token", None)
    unk = tok.token_to_id(unk_token) if unk_token else None
    if unk is not None and unk in ids:
        k = ids.index(unk)
        s, e = offsets[k]
        raise OlmoflowError(f"trace: {what} characters {text[s:e]!r} at offset {s} map to the tokenizer's unknown"
                            f" token {unk_token!r} ({index.tokenizer_path}); they cannot be traced")
    covered = np.zeros(len(text) + 1, dtype=np.int64)
    for s, e in offsets:
        covered[s] += 1
        covered[e] -= 1
    cov = np.cumsum(covered)[: len(text)] > 0
    missing = [k for k in np.flatnonzero(~cov).tolist() if not text[k].isspace()]
    if missing:
        k = missing[0]
        raise OlmoflowError(f"trace: {what} character {text[k]!r} at offset {k} is not represented by the tokenizer"
                            f" ({index.tokenizer_path}); it cannot be traced")
    return ids, offsets  # type: ignore[return-value]


def _bm25(query: list[str], docs: list[list[str]], k1: float = 1.2, b: float = 0.75) -> list[float]:
    """BM25 score of each document (a list of words) for the query words, the documents as the corpus."""
    n = len(docs)
    if n == 0:
        return []
    avgdl = sum(len(d) for d in docs) / n or 1.0
    df: Counter[str] = Counter()
    for d in docs:
        df.update(set(d))
    q = Counter(query)
    scores = []
    for d in docs:
        tf = Counter(d)
        s = 0.0
        for w in q:
            f = tf.get(w, 0)
            if not f:
                continue
            idf = math.log(1 + (n - df[w] + 0.5) / (df[w] + 0.5))
            s += idf * f * (k1 + 1) / (f + k1 * (1 - b + b * len(d) / avgdl))
        scores.append(s)
    return scores


def trace_tokens(index: TraceIndex, ids: list[int], offsets: list[tuple[int, int]], text: str,
                 min_tokens: int = 3, max_count: int = 10, fraction: float = 0.05) -> list[dict[str, Any]]:
    """The kept spans (before merging) of a tokenized text: dicts with token range ``i``/``j``, char range
    ``start``/``end``, ``count`` and ``unigram_logprob``; see the module docstring for the rules."""
    L = len(ids)
    if L == 0:
        return []
    m = index.longest_matches(ids)
    starts = [o[0] for o in offsets]
    ends = [o[1] for o in offsets]
    delims = _delimiters(text)
    next_word = [len(text)] * (len(text) + 1)  # next_word[k]: first word character at or after k
    for k in range(len(text) - 1, -1, -1):
        next_word[k] = k if _is_word(text[k]) else next_word[k + 1]

    def char_range(i: int, j: int) -> tuple[int, int]:
        s, e = starts[i], ends[j - 1]
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        return s, e

    def crosses(s: int, e: int) -> bool:
        k = bisect.bisect_left(delims, s)
        while k < len(delims) and delims[k] < e:
            if next_word[delims[k] + 1] < e:
                return True
            k += 1
        return False

    def start_ok(s: int) -> bool:
        return (s == 0 or not (_is_word(text[s - 1]) and _is_word(text[s]))) and text[s] not in ".!?"

    def end_ok(e: int) -> bool:
        return e == len(text) or not (_is_word(text[e - 1]) and _is_word(text[e]))

    logp = np.log(np.maximum(index.unigram, 1) / max(index.n_tokens, 1))
    cands = []
    for i in range(L):
        j = i + int(m.lengths[i])
        if j - i < min_tokens:
            continue
        s, _ = char_range(i, i + 1)
        if s >= len(text) or not start_ok(s):
            continue
        while j - i >= min_tokens:
            s, e = char_range(i, j)
            if e > s and not crosses(s, e) and end_ok(e):
                break
            j -= 1
        if j - i < min_tokens:
            continue
        c = m.count(i, j - i)
        if c > max_count or c == 0:
            continue
        s, e = char_range(i, j)
        cands.append({"i": i, "j": j, "start": s, "end": e, "text": text[s:e], "count": c,
                      "unigram_logprob": float(logp[np.asarray(ids[i:j])].sum())})
    maximal, reach = [], -1
    for c in cands:  # ordered by i: a span is inside an earlier one iff it ends no later
        if c["j"] > reach:
            maximal.append(c)
            reach = c["j"]
    keep = max(1, math.ceil(fraction * L))
    ranked = sorted(maximal, key=lambda c: (c["unigram_logprob"], c["i"]))[:keep]
    return sorted(ranked, key=lambda c: c["i"])


def _documents(index: TraceIndex, ids: list[int], span: dict[str, Any], max_docs: int) -> list[dict[str, Any]]:
    """The documents holding ``span`` (one entry per document), with snippet and match offsets."""
    tok = index.tokenizer
    ngram = ids[span["i"] : span["j"]]
    out, seen = [], set()
    for shard, pos in index.find(ngram, limit=max(max_docs, span["count"])):
        doc, d0, d1 = index.document_of(shard, pos)
        if doc in seen:
            continue
        seen.add(doc)
        rec = index.record(doc)
        end_doc = d1 - 1 if d1 > d0 and int(index.shards[shard].tokens[d1 - 1]) == index.eos_token_id else d1
        w0, w1 = max(d0, pos - SNIPPET_TOKENS), min(end_doc, pos + len(ngram) + SNIPPET_TOKENS)
        toks = index.doc_tokens(shard, w0, w1).tolist()
        pre = tok.decode(toks[: pos - w0], skip_special_tokens=False)
        upto = tok.decode(toks[: pos - w0 + len(ngram)], skip_special_tokens=False)
        snippet = tok.decode(toks, skip_special_tokens=False)
        a, b = len(pre), len(upto)
        while a < b and snippet[a].isspace():
            a += 1
        while b > a and snippet[b - 1].isspace():
            b -= 1
        b0, b1 = max(d0, pos - BM25_TOKENS // 2), min(end_doc, pos + BM25_TOKENS // 2)
        body = tok.decode(index.doc_tokens(shard, b0, b1).tolist(), skip_special_tokens=False)
        cur = rec.get("curation")
        if cur is not None:
            cur = {**cur, "mix": {"dataset": rec.get("dataset"), "repeats": rec.get("repeats", 1)}}
        out.append({"doc_id": rec["id"], "source": rec.get("source", ""), "score": 0.0, "snippet": snippet,
                    "match": [a, b], "curation": cur, "repeats": rec.get("repeats", 1),
                    "_words": [w.lower() for w in _WORDS.findall(body)]})
    return out


def trace_text(index: TraceIndex, response: str, prompt: str = "", min_tokens: int = 3, max_count: int = 10,
               fraction: float = 0.05, max_docs: int = 10) -> dict[str, Any]:
    """Trace ``response`` (generated for ``prompt``) in ``index``; returns the result dict of docs/trace.md.

    Raises :class:`~olmoflow.errors.OlmoflowError` (one line) on an empty response or characters the
    index's tokenizer cannot represent."""
    t0 = time.perf_counter()
    if not isinstance(response, str) or not response.strip():
        raise OlmoflowError("trace: empty response (nothing to trace)")
    if not isinstance(prompt, str):
        raise OlmoflowError("trace: prompt must be a string")
    ids, offsets = _encode(index, response, "response")
    raw = trace_tokens(index, ids, offsets, response, min_tokens, max_count, fraction)
    for s in raw:
        s["documents"] = _documents(index, ids, s, max_docs)
    # merge overlapping spans (their documents pooled, each keeping where its own span matched)
    merged: list[dict[str, Any]] = []
    for s in raw:
        if merged and s["start"] < merged[-1]["end"]:
            cur = merged[-1]
            cur["end"] = max(cur["end"], s["end"])
            cur["text"] = response[cur["start"] : cur["end"]]
            cur["count"] = min(cur["count"], s["count"])
            cur["unigram_logprob"] = min(cur["unigram_logprob"], s["unigram_logprob"])
            have = {d["doc_id"] for d in cur["documents"]}
            cur["documents"] += [d for d in s["documents"] if d["doc_id"] not in have]
        else:
            merged.append({k: s[k] for k in ("start", "end", "text", "count", "unigram_logprob", "documents")})
    query = [w.lower() for w in _WORDS.findall(prompt + "\n" + response)]
    pool = [d for s in merged for d in s["documents"]]
    by_id = {}
    for d, score in zip(pool, _bm25(query, [d["_words"] for d in pool])):
        by_id.setdefault(d["doc_id"], round(score, 4))
    for s in merged:
        for d in s["documents"]:
            d["score"] = by_id[d["doc_id"]]
            d.pop("_words", None)
        s["documents"] = sorted(s["documents"], key=lambda d: (-d["score"], d["doc_id"]))[:max_docs]
        s["unigram_logprob"] = round(s["unigram_logprob"], 4)
    return {
        "response": response, "prompt": prompt,
        "index": {"path": str(index.path), "tokens": index.n_tokens, "documents": index.n_docs,
                  "tokenizer": str(index.meta["tokenizer"].get("source", index.tokenizer_path))},
        "spans": merged,
        "elapsed_s": round(time.perf_counter() - t0, 4),
    }


def render_markdown(result: dict[str, Any], docs_per_span: int = 2) -> list[str]:
    """Markdown lines: the response with traced spans in bold, then each span's top documents and
    their curation records (the flow report's "traced sample")."""
    text, spans = result["response"], result["spans"]
    out, at = [], 0
    for s in spans:
        out.append(text[at : s["start"]] + f"**{text[s['start'] : s['end']]}**")
        at = s["end"]
    out.append(text[at:])
    body = "".join(out).replace("\n", "  \n")
    lines = ["> " + ln for ln in body.split("\n")] + [""]
    if not spans:
        return lines + ["(no span of this response occurs verbatim and rarely enough in the training data)", ""]
    lines += ["| span | count | document | source | BM25 | curation |", "|---|---|---|---|---|---|"]
    for s in spans:
        for d in s["documents"][:docs_per_span]:
            lines.append(f"| {_md(s['text'], 60)} | {s['count']} | `{d['doc_id']}` | {d['source']} | {d['score']} |"
                         f" {_md(_curation_line(d.get('curation')), 200)} |")
    return lines + [""]


def _md(s: str, n: int) -> str:
    s = s.replace("|", "\\|").replace("\n", " ")
    return s if len(s) <= n else s[: n - 1] + "…"


def _curation_line(cur: dict[str, Any] | None) -> str:
    """One line for a curation record: raw file:line, quality, dedup cluster, upsampling, mix repeats."""
    if not cur:
        return "no curation record"
    parts = []
    raw = cur.get("raw") or {}
    if raw:
        parts.append(f"{raw.get('file')}:{raw.get('line')}")
    q = cur.get("quality") or {}
    if q:
        parts.append("quality " + ", ".join(f"{k} {v}" for k, v in q.items()))
    dd = cur.get("dedup") or {}
    if dd:
        parts.append("dedup cluster " + ", ".join(f"{k} {v}" for k, v in dd.items()))
    if cur.get("upsample") is not None:
        parts.append(f"upsampled x{cur['upsample']}")
    mix = cur.get("mix") or {}
    if mix:
        parts.append(f"in training x{mix.get('repeats')}")
    if cur.get("steps"):
        parts.append(f"passed {len(cur['steps'])} steps")
    return "; ".join(parts)


def render_terminal(result: dict[str, Any], color: bool = True) -> str:
    """A readable terminal view: the response with spans highlighted, then spans and their documents."""
    on, off = ("\033[1;33m", "\033[0m") if color else ("[", "]")
    text, spans = result["response"], result["spans"]
    out, at = [], 0
    for s in spans:
        out.append(text[at : s["start"]] + on + text[s["start"] : s["end"]] + off)
        at = s["end"]
    out.append(text[at:])
    lines = ["".join(out), "",
             f"{len(spans)} span(s) traced in {result['index']['tokens']:,} tokens / "
             f"{result['index']['documents']:,} documents ({result['elapsed_s']:.3f} s)"]
    for s in spans:
        lines.append(f"\n{on}{s['text']}{off}  [{s['start']}:{s['end']}] count={s['count']}"
                     f" unigram_logprob={s['unigram_logprob']}")
        for d in s["documents"]:
            a, b = d["match"]
            snip = d["snippet"][:a] + on + d["snippet"][a:b] + off + d["snippet"][b:]
            lines.append(f"  - {d['doc_id']} ({d['source']}, BM25 {d['score']}): {snip!r}")
            lines.append(f"    curation: {_curation_line(d.get('curation'))}")
    return "\n".join(lines)
