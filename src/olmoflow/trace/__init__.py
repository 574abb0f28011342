"""OlmoTrace: a suffix-array index over the training tokens and tracing of model outputs back to the
documents (and curation decisions) they come from. See docs/trace.md.

    from olmoflow.trace import TraceIndex, trace_text
    index = TraceIndex.open(index_dir)
    result = trace_text(index, response, prompt="")
"""

from olmoflow.trace.index import FORMAT, TraceIndex, build_index, tokenizer_fingerprint
from olmoflow.trace.tracer import render_markdown, render_terminal, trace_text

__all__ = ["FORMAT", "TraceIndex", "build_index", "render_markdown", "render_terminal", "tokenizer_fingerprint",
           "trace_text"]
