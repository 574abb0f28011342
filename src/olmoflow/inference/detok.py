"""Incremental detokenization and stop-string handling for one generated sequence.

Decoding the whole output after every token costs O(n²); instead each step decodes a short
window of recent tokens (the approach of vLLM / TGI) and emits the new characters once they form
complete UTF-8 (byte-level BPE can split a character across tokens). Stop strings are searched
only around the newly added text, including the complete characters before a split one (so a token
that completes a stop string stops generation at once); streamed text holds back any tail that
could still grow into a stop string, so the concatenated stream always equals the final text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

DecodeFn = Callable[[list[int]], str]


def decode_fn(tokenizer) -> DecodeFn | None:
    """A ``list[int] -> str`` function for an olmoflow ``Tok``, a ``tokenizers.Tokenizer``, an HF
    tokenizer or a plain callable. Special tokens are kept (stop tokens never reach the text)."""
    if tokenizer is None:
        return None
    try:
        from tokenizers import Tokenizer
    except ImportError:  # pragma: no cover - tokenizers is a core dependency
        Tokenizer = ()  # type: ignore[assignment]  # noqa: N806
    if isinstance(tokenizer, Tokenizer):
        return lambda ids: tokenizer.decode(ids, skip_special_tokens=False)
    if hasattr(tokenizer, "decode"):
        return lambda ids: tokenizer.decode(ids)
    if callable(tokenizer):
        return tokenizer
    raise TypeError(f"tokenizer must have a decode(ids) method or be callable, got {type(tokenizer).__name__}")


class TextStream:
    """Accumulates the text of one sequence token by token and finds stop strings in it."""

    def __init__(self, decode: DecodeFn, stop_strings: Sequence[str] = ()):
        self.decode = decode
        self.stops = [s for s in stop_strings if s]
        self.max_stop = max((len(s) for s in self.stops), default=0)
        self.ids: list[int] = []
        self.text = ""
        self.emitted = 0  # characters already handed to the stream callback
        self._prefix = 0  # ids[_prefix:_read] decode to text already accounted for
        self._read = 0
        self.stopped_by: str | None = None

    def add(self, token_id: int) -> str:
        """Append a token; return the text that may be streamed now. Sets ``stopped_by`` on a match."""
        self.ids.append(token_id)
        prefix_text = self.decode(self.ids[self._prefix : self._read])
        new_text = self.decode(self.ids[self._prefix :])
        if len(new_text) > len(prefix_text) and not new_text.endswith("\ufffd"):
            old_len = len(self.text)
            self.text += new_text[len(prefix_text) :]
            self._prefix, self._read = self._read, len(self.ids)
            if self.stops:
                self._find_stop(max(0, old_len - self.max_stop + 1))
        elif self.stops and len(new_text) > len(prefix_text):
            # the new text ends inside a character split across tokens: a stop string may already
            # be complete before that character (then generation stops at this token)
            complete = new_text[len(prefix_text) :].rstrip("\ufffd")
            old_len = len(self.text)
            self.text += complete
            self._find_stop(max(0, old_len - self.max_stop + 1))
            if self.stopped_by is None:
                self.text = self.text[:old_len]
        return self._release(final=self.stopped_by is not None)

    def finish(self) -> str:
        """End of generation: flush undecoded bytes (unless a stop string ended it) and held-back text."""
        if self.stopped_by is None and self._prefix < len(self.ids):
            prefix_text = self.decode(self.ids[self._prefix : self._read])
            new_text = self.decode(self.ids[self._prefix :])
            old_len = len(self.text)
            self.text += new_text[len(prefix_text) :]
            self._prefix = self._read = len(self.ids)
            if self.stops:
                self._find_stop(max(0, old_len - self.max_stop + 1))
        return self._release(final=True)

    def _find_stop(self, start: int) -> None:
        best = None
        for s in self.stops:
            i = self.text.find(s, start)
            if i >= 0 and (best is None or i < best[0]):
                best = (i, s)
        if best is not None:
            self.text = self.text[: best[0]]
            self.stopped_by = best[1]

    def _release(self, final: bool) -> str:
        end = len(self.text) if final else len(self.text) - self._held_back()
        if end <= self.emitted:
            return ""
        out = self.text[self.emitted : end]
        self.emitted = end
        return out

    def _held_back(self) -> int:
        """Length of the longest tail of the text that is a proper prefix of some stop string."""
        tail = self.text[-self.max_stop :] if self.max_stop else ""
        for n in range(min(len(tail), self.max_stop - 1), 0, -1):
            suffix = tail[-n:]
            if any(s.startswith(suffix) for s in self.stops):
                return n
        return 0
