"""Built-in stage types, one small module each.

Importing this package only registers the types: every wrapper imports the package it wraps
(olmoflow.data, olmoflow.train, ...) inside its functions, so planning a flow, or running one that
does not use a stage, never needs that stage's extras.
"""

from olmoflow.flow.stages import (  # noqa: F401
    chat_data,
    claims,
    compare,
    curate,
    demo_corpus,
    dolmino,
    dpo,
    evaluate,
    export,
    long_docs,
    microanneal,
    midtrain,
    mix,
    pairs,
    planned,
    pretrain,
    rlvr,
    sft,
    soup,
    tokenize,
    tokenizer,
    trace_index,
)
