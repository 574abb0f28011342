"""Stage ``trace_index``: a trace index over the tokens training read, and a traced sample (olmoflow.trace).

Inputs: ``data`` (a token dataset: a mix or tokenize artifact; more as ``data_<name>``), optional
``curation`` (a curate artifact, or several as ``curation_<name>``: its per-document curation records are
joined to the indexed documents), optional ``sft`` (a chat_data artifact or conversation file: indexed as
SFT tokenizes it, into ``sft_tokens/``; needs ``tokenizer``), optional ``model`` (+ ``tokenizer``) to
generate the traced sample.
Config: ``shard_tokens``; the sample's ``sample_prompt`` / ``sample_tokens`` (greedy, from ``model``) or a
fixed ``sample_text``; the tracing knobs ``min_tokens``, ``max_count``, ``fraction``. Output: ``index/``
(the index, docs/trace.md) and ``traced_sample.json`` (the traced sample in the /v1/trace schema). Report: the
"Traced sample" section, the sample with its spans in bold and the top documents with their curation
records.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import Field

from olmoflow.flow.registry import ReportSection, StageArtifact, StageConfig, StageContext, register_stage
from olmoflow.flow.stages._common import need


class TraceIndexConfig(StageConfig):
    #: tokens per suffix-array shard (one shard is sorted in memory at a time)
    shard_tokens: int = Field(500_000_000, ge=1)
    #: the traced sample: a greedy generation from the ``model`` input for this prompt ("" : none)
    sample_prompt: str = "Question:"
    sample_tokens: int = Field(64, ge=1)
    #: the prompt is a user message: render it with the chat template and stop at the end of the turn
    sample_chat: bool = False
    #: trace this text instead of a generation (no model needed)
    sample_text: str | None = None
    min_tokens: int = Field(3, ge=1)
    max_count: int = Field(10, ge=1)
    fraction: float = Field(0.05, gt=0, le=1)


def traced_sample_section(arts: list[StageArtifact], workdir: Path) -> list[str]:
    """Per trace_index stage: the index size and the traced sample (spans in bold, documents + lineage)."""
    from olmoflow.trace import render_markdown

    lines: list[str] = []
    for a in arts:
        meta_path, sample_path = a.dir / "index" / "trace.json", a.dir / "traced_sample.json"
        if not meta_path.is_file():
            continue
        meta = json.loads(meta_path.read_text())
        lines += [f"{a.name}: {meta['n_tokens']:,} tokens, {meta['n_docs']:,} documents "
                  f"({meta.get('n_docs_with_curation', 0):,} with curation records), "
                  f"{meta['bytes_per_token']} bytes/token, built at {meta['build_tokens_per_s']:,.0f} tokens/s", ""]
        if sample_path.is_file():
            res = json.loads(sample_path.read_text())
            if res.get("prompt"):
                lines += [f"Prompt: `{res['prompt']}` (greedy generation of the `model` input, traced below)", ""]
            lines += [f"({res['note']})", ""] if res.get("note") else render_markdown(res)
    return lines


TRACED = ReportSection("Traced sample", traced_sample_section, order=85)


@register_stage("trace_index", description="trace index over the training tokens + a traced sample (olmoflow.trace)",
                config=TraceIndexConfig, report=(TRACED,), libraries=("numpy", "pydivsufsort", "tokenizers", "xxhash"),
                # docs.jsonl records absolute paths (normalised when hashed); the line offsets, checksums and
                # size derived from it would still move with the workdir, so they are left out of the id
                volatile_files=("index/docs.offsets.npy",),
                volatile_keys={"index/trace.json": ("build_seconds", "build_tokens_per_s", "files", "bytes_per_token"),
                               "traced_sample.json": ("elapsed_s",)})
def run(config: TraceIndexConfig, inputs: dict[str, Path], out_dir: Path, ctx: StageContext) -> dict[str, Any]:
    from olmoflow.trace import TraceIndex, build_index, trace_text

    need(inputs, "data", ctx.stage, "a token dataset (mix or tokenize output)")
    data = [p for k, p in sorted(inputs.items()) if (k == "data" or k.startswith("data_")) and p is not None]
    curation = [p for k, p in sorted(inputs.items()) if (k == "curation" or k.startswith("curation_")) and p is not None]
    if inputs.get("sft") is not None:  # the SFT conversations, tokenized as SFT tokenizes them
        from olmoflow.flow.stages._posttrain import find_file
        from olmoflow.flow.stages.sft import CHAT_FILES
        from olmoflow.trace.chat import chat_token_dataset

        chats = find_file(inputs["sft"], CHAT_FILES, ctx.stage, "SFT conversations")
        chat_token_dataset([chats], need(inputs, "tokenizer", ctx.stage, "the tokenizer (to tokenize 'sft')"),
                           out_dir / "sft_tokens")
        data.append(out_dir / "sft_tokens")
    meta = build_index(data, out_dir / "index", tokenizer=inputs.get("tokenizer"), curation=curation,
                       shard_tokens=config.shard_tokens, quiet=ctx.quiet)
    index = TraceIndex.open(out_dir / "index", verify=False)
    text, prompt = config.sample_text, ""
    if text is None and inputs.get("model") is not None and config.sample_prompt:
        from olmoflow.trace.cli import generate

        prompt = config.sample_prompt
        text = generate(str(inputs["model"]), prompt, index.tokenizer_path,
                                 str(inputs["tokenizer"]) if inputs.get("tokenizer") else None,
                                 chat=config.sample_chat, max_new_tokens=config.sample_tokens)
    out: dict[str, Any] = {"n_tokens": meta["n_tokens"], "n_docs": meta["n_docs"],
                           "bytes_per_token": meta["bytes_per_token"],
                           "docs_with_curation": meta["n_docs_with_curation"]}
    if text is not None:
        if text.strip():
            res = trace_text(index, text, prompt=prompt, min_tokens=config.min_tokens, max_count=config.max_count,
                             fraction=config.fraction)
        else:  # a weak model may generate only whitespace: say so in the report rather than fail the flow
            res = {"response": text, "prompt": prompt, "spans": [], "elapsed_s": 0.0,
                   "note": "the generation is empty or whitespace: nothing to trace"}
        (out_dir / "traced_sample.json").write_text(json.dumps(res, ensure_ascii=False, indent=1))
        out["sample_spans"] = len(res["spans"])
    return out
