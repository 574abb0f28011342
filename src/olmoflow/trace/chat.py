"""Post-training chat data as a token dataset, so the trace index covers what SFT trained on.

Each conversation is tokenized exactly as SFT tokenizes it (:func:`olmoflow.posttrain.chat_data.load_chat_examples`:
the chat template, segment by segment) and written as one document (plus EOS) of a token dataset
(:mod:`olmoflow.data.tokens`) with source ``sft``; its record keeps the conversation's id and its ``raw``
file and line, which tracing shows as the document's lineage.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def chat_token_dataset(paths: Sequence[str | Path], tokenizer: str | Path, out: str | Path,
                       source: str = "sft") -> dict[str, Any]:
    """Write the conversations of ``paths`` (JSONL/Parquet chat records) as a token dataset in ``out``;
    returns its meta.json content."""
    from olmoflow.data.tokens import ShardWriter, dtype_for, write_meta
    from olmoflow.posttrain.chat_data import load_chat_examples
    from olmoflow.tokenizer import Tok

    tok = Tok.from_dir(tokenizer)
    examples, _ = load_chat_examples(list(paths), tok, max_len=1 << 30)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with ShardWriter(out, f"{source}-00000", source, dtype_for(tok.vocab_size)) as w:
        for ex in examples:
            file, _, line = ex.source.rpartition(":")
            w.add(np.append(ex.ids.astype(np.int64), tok.eos_id), ex.id,
                  raw={"file": file, "line": int(line) if line.isdigit() else None})
    return write_meta(out, [w.entry], tok.vocab_size, tok.eos_id, str(tokenizer))
