"""Special tokens of the olmoflow tokenizer, at fixed low ids (0..12) in this order.

OLMo has no BOS token: documents are separated by ``<|endoftext|>`` (EOS) only.

Two kinds of added tokens:
- *control* tokens (EOS, pad, ChatML turn markers, FIM sentinels) are marked ``special``: a decode
  with ``skip_special_tokens=True`` drops them.
- *markup* tokens (``<think>``, ``<functions>``, ``<function_calls>`` and their closers) are atomic
  (always one id, never split or merged) but not ``special``, so they survive
  ``skip_special_tokens=True``: a server needs them to parse reasoning and tool calls.
"""

from __future__ import annotations

EOS = "<|endoftext|>"
PAD = "<|pad|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
THINK_START, THINK_END = "<think>", "</think>"
FUNCTIONS_START, FUNCTIONS_END = "<functions>", "</functions>"
CALLS_START, CALLS_END = "<function_calls>", "</function_calls>"
FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX = "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>"

#: All added tokens; token ``SPECIAL_TOKENS[i]`` has id ``i``.
SPECIAL_TOKENS: list[str] = [
    EOS,
    PAD,
    IM_START,
    IM_END,
    THINK_START,
    THINK_END,
    FUNCTIONS_START,
    FUNCTIONS_END,
    CALLS_START,
    CALLS_END,
    FIM_PREFIX,
    FIM_MIDDLE,
    FIM_SUFFIX,
]

#: Markup tokens: atomic but kept by ``skip_special_tokens=True``.
MARKUP_TOKENS: frozenset[str] = frozenset(
    {THINK_START, THINK_END, FUNCTIONS_START, FUNCTIONS_END, CALLS_START, CALLS_END}
)

#: Tokens a chat generation should stop on (end of turn, end of document).
STOP_TOKENS: list[str] = [IM_END, EOS]

#: Bytes in the byte-level alphabet: every byte has its own token, so nothing is ever unknown.
N_BYTES = 256

#: The smallest vocabulary that holds the special tokens and the byte alphabet.
MIN_VOCAB_SIZE = len(SPECIAL_TOKENS) + N_BYTES
