"""The olmoflow tokenizer: byte-level BPE (HF ``tokenizers``), special tokens, OLMo 3 chat template.

    from olmoflow.tokenizer import Tok, train_tokenizer, apply_chat_template
    train_tokenizer([Path("docs/")], Path("tok"), vocab_size=4096)
    tok = Tok.from_dir("tok")
    ids = tok.encode(apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True))

A tokenizer directory holds tokenizer.json, tokenizer_config.json (eos ``<|endoftext|>``, pad
``<|pad|>``, no BOS, chat template), special_tokens_map.json and chat_template.jinja, and loads with
``transformers.AutoTokenizer.from_pretrained``. See docs/tokenizer.md.
"""

from olmoflow.tokenizer.chat import (
    CHAT_TEMPLATE,
    DEFAULT_TOOLS_SYSTEM,
    apply_chat_template,
    chat_segments,
    parse_function_calls,
)
from olmoflow.tokenizer.special import EOS, MIN_VOCAB_SIZE, PAD, SPECIAL_TOKENS, STOP_TOKENS
from olmoflow.tokenizer.tok import Tok, load_tokenizer
from olmoflow.tokenizer.train import SPLIT_PATTERN, save_for_hf, train_tokenizer

__all__ = [
    "CHAT_TEMPLATE",
    "DEFAULT_TOOLS_SYSTEM",
    "EOS",
    "MIN_VOCAB_SIZE",
    "PAD",
    "SPECIAL_TOKENS",
    "SPLIT_PATTERN",
    "STOP_TOKENS",
    "Tok",
    "apply_chat_template",
    "chat_segments",
    "load_tokenizer",
    "parse_function_calls",
    "save_for_hf",
    "train_tokenizer",
]
