"""Loading a trained tokenizer, and ``Tok``: the small encode/decode wrapper other stages use."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from olmoflow.errors import OlmoflowError
from olmoflow.tokenizer.chat import apply_chat_template, chat_segments
from olmoflow.tokenizer.special import EOS, PAD, STOP_TOKENS


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Load a ``tokenizers.Tokenizer`` from a tokenizer directory (or HF export) or a tokenizer.json."""
    path = Path(path)
    file = path / "tokenizer.json" if path.is_dir() else path
    if not file.is_file():
        raise OlmoflowError(f"tokenizer not found: {file}")
    try:
        return Tokenizer.from_file(str(file))
    except Exception as e:  # tokenizers raises plain Exception on bad JSON
        raise OlmoflowError(f"{file}: not a valid tokenizer.json ({str(e).splitlines()[0]})") from None


def _check_unicode(texts: Sequence[object]) -> None:
    """OlmoflowError naming the first string with a lone surrogate (``tokenizers`` says only TypeError)."""
    for i, text in enumerate(texts):
        if isinstance(text, str):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as e:
                where = f"text {i}" if len(texts) > 1 else "text"
                raise OlmoflowError(
                    f"{where} is not valid Unicode: lone surrogate {text[e.start]!r} at character {e.start}"
                ) from None


class Tok:
    """Encode/decode without surprises: no BOS/EOS added, special tokens kept on decode.

    ``decode(encode(s)) == s`` for every string ``s``. Text that spells a special token (e.g.
    ``"<|im_end|>"``) encodes to that token's single id.
    """

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self.eos_id = self._required(EOS)
        self.pad_id = self._required(PAD)

    @classmethod
    def from_dir(cls, path: str | Path) -> Tok:
        """Load from a tokenizer directory, an HF export directory, or a tokenizer.json path."""
        return cls(load_tokenizer(path))

    def _required(self, token: str) -> int:
        tid = self.tokenizer.token_to_id(token)
        if tid is None:
            raise OlmoflowError(f"tokenizer has no {token} token (not an olmoflow tokenizer?)")
        return tid

    @property
    def vocab_size(self) -> int:
        """Number of token ids (merges, bytes and special tokens); embeddings may pad beyond it."""
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    @property
    def stop_ids(self) -> list[int]:
        """Ids a chat generation stops on: ``<|im_end|>`` and ``<|endoftext|>``."""
        return [self.token_id(t) for t in STOP_TOKENS]

    def token_id(self, token: str) -> int:
        """The id of a single token (e.g. a special token); OlmoflowError if it is not in the vocab."""
        tid = self.tokenizer.token_to_id(token)
        if tid is None:
            raise OlmoflowError(f"token {token!r} is not in the vocabulary")
        return tid

    def encode(self, text: str) -> list[int]:
        try:
            return self.tokenizer.encode(text, add_special_tokens=False).ids
        except TypeError:
            _check_unicode([text])
            raise

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Encode many texts in parallel (Rust threads)."""
        texts = list(texts)
        try:
            return [e.ids for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]
        except TypeError:
            _check_unicode(texts)
            raise

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def encode_chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None = None,
        add_generation_prompt: bool = False,
    ) -> list[int]:
        """Token ids of :func:`apply_chat_template`'s text."""
        return self.encode(apply_chat_template(messages, tools, add_generation_prompt))

    def encode_chat_with_mask(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> tuple[list[int], list[bool]]:
        """Token ids of a conversation and, per token, whether it is assistant output (SFT labels).

        Each segment is encoded on its own, so the ids may differ from ``encode_chat`` at segment
        seams (they decode to the same text); segments start and end at special tokens or newlines.
        """
        ids: list[int] = []
        mask: list[bool] = []
        for text, is_assistant in chat_segments(messages, tools):
            seg = self.encode(text)
            ids += seg
            mask += [is_assistant] * len(seg)
        return ids, mask
