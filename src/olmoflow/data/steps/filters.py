"""Heuristic quality filters: Gopher (quality + repetition), C4, FineWeb, DCLM-style sentences.

Every threshold is a config field with a valid range, so a bad value fails when the recipe loads.
Thresholds follow the published defaults (Gopher: Rae et al. 2021; C4: Raffel et al. 2020;
FineWeb: Penedo et al. 2024), as implemented by datatrove. Keep/remove decisions are compared with
datatrove's filters in ``tests/data/test_filters_vs_datatrove.py``; the deliberate differences:

- Words are whitespace-separated tokens (as Dolma's Gopher tagger), not spaCy/NLTK tokens, and
  punctuation-only tokens count as words; stop words match case-insensitively.
- Line ratios (bullets, ellipses, duplicate lines, FineWeb) are over non-blank, stripped lines;
  datatrove counts blank lines in the denominator and does not strip trailing whitespace. Bullets
  are ``•`` ``-`` ``*`` ``●`` ``◦`` ``‣`` (datatrove: ``•`` ``-``).
- Gopher repetition: n-grams are over lowercased alphanumeric words; character fractions are over
  the characters of the counted items (lines, paragraphs, words), not over ``len(text)``; the top
  n-gram must occur more than once; duplicate n-gram characters overlapping each other count once
  (Gopher paper; datatrove skips ahead greedily).
- C4: ``lorem ipsum`` and ``{`` drop the page wherever they appear (C4 paper: "any page"; Dolma's
  C4 tagger), not only in lines that passed the line rules; a closing ``”`` is terminal
  punctuation; Wikipedia citation marks are not stripped. Sentences are split by a regex (after
  ``.!?`` and at newlines), not by punkt.
"""

from __future__ import annotations

import re

import numpy as np
from pydantic import Field

from olmoflow.data.steps.base import Doc, Filter, StepConfig
from olmoflow.data.text import ngram_hashes, word_hashes, words

STOP_WORDS = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})
_TERMINAL = (".", "!", "?", '"', "'", "\u201d")
_SENT_SPLIT = re.compile(r"(?<=[.!?])\s+|\n+")
_BULLETS = ("\u2022", "-", "*", "\u25cf", "\u25e6", "\u2023")


def _lines(text: str) -> list[str]:
    return [ln.strip() for ln in text.split("\n") if ln.strip()]


class GopherQualityConfig(StepConfig):
    min_words: int = Field(default=50, ge=0)
    max_words: int = Field(default=100_000, ge=1)
    min_avg_word_length: float = Field(default=3.0, ge=0)
    max_avg_word_length: float = Field(default=10.0, ge=0)
    max_symbol_word_ratio: float = Field(default=0.1, ge=0, le=1)
    max_bullet_lines_ratio: float = Field(default=0.9, ge=0, le=1)
    max_ellipsis_lines_ratio: float = Field(default=0.3, ge=0, le=1)
    max_non_alpha_words_ratio: float = Field(default=0.8, ge=0, le=1, description="min share of words with a letter")
    min_stop_words: int = Field(default=2, ge=0)


class GopherQuality(Filter):
    """Gopher quality rules: word counts, mean word length, symbols, bullets, ellipses, stop words."""

    Config = GopherQualityConfig

    def filter(self, doc: Doc) -> tuple[bool, str | None]:
        c: GopherQualityConfig = self.cfg  # type: ignore[assignment]
        text = doc["text"]
        toks = text.split()
        n = len(toks)
        if n < c.min_words or n == 0:
            return False, "gopher_short_doc"
        if n > c.max_words:
            return False, "gopher_long_doc"
        avg = sum(len(t) for t in toks) / n
        if avg < c.min_avg_word_length:
            return False, "gopher_below_avg_word_length"
        if avg > c.max_avg_word_length:
            return False, "gopher_above_avg_word_length"
        # "symbol-to-word ratio greater than 0.1 for either the hash symbol or the ellipsis"
        if text.count("#") / n > c.max_symbol_word_ratio:
            return False, "gopher_symbol_ratio"
        if (text.count("...") + text.count("\u2026")) / n > c.max_symbol_word_ratio:
            return False, "gopher_symbol_ratio"
        lines = _lines(text)
        if lines:
            if sum(ln.startswith(_BULLETS) for ln in lines) / len(lines) > c.max_bullet_lines_ratio:
                return False, "gopher_bullet_lines"
            if sum(ln.endswith(("...", "\u2026")) for ln in lines) / len(lines) > c.max_ellipsis_lines_ratio:
                return False, "gopher_ellipsis_lines"
        if sum(any(ch.isalpha() for ch in t) for t in toks) / n < c.max_non_alpha_words_ratio:
            return False, "gopher_non_alpha_words"
        # "at least two of the following English words": distinct stop words, not occurrences
        if len(STOP_WORDS.intersection(t.lower() for t in toks)) < c.min_stop_words:
            return False, "gopher_few_stop_words"
        return True, None


class GopherRepetitionConfig(StepConfig):
    dup_line_frac: float = Field(default=0.3, ge=0, le=1)
    dup_para_frac: float = Field(default=0.3, ge=0, le=1)
    dup_line_char_frac: float = Field(default=0.2, ge=0, le=1)
    dup_para_char_frac: float = Field(default=0.2, ge=0, le=1)
    top_n_grams: dict[int, float] = Field(default={2: 0.2, 3: 0.18, 4: 0.16})
    dup_n_grams: dict[int, float] = Field(default={5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10})


def _dup_stats(items: list[str]) -> tuple[float, float]:
    seen: set[str] = set()
    dup_n = dup_chars = 0
    for it in items:
        if it in seen:
            dup_n += 1
            dup_chars += len(it)
        else:
            seen.add(it)
    total_chars = sum(len(i) for i in items) or 1
    return dup_n / max(len(items), 1), dup_chars / total_chars


class GopherRepetition(Filter):
    """Gopher repetition rules: duplicated lines/paragraphs and over-represented n-grams."""

    Config = GopherRepetitionConfig

    def filter(self, doc: Doc) -> tuple[bool, str | None]:
        c: GopherRepetitionConfig = self.cfg  # type: ignore[assignment]
        text = doc["text"]
        paras = [p.strip() for p in re.split(r"\n{2,}", text) if p.strip()]
        frac, char_frac = _dup_stats(paras)
        if frac > c.dup_para_frac:
            return False, "gopher_dup_para_frac"
        if char_frac > c.dup_para_char_frac:
            return False, "gopher_dup_para_char_frac"
        lines = _lines(text)
        frac, char_frac = _dup_stats(lines)
        if frac > c.dup_line_frac:
            return False, "gopher_dup_line_frac"
        if char_frac > c.dup_line_char_frac:
            return False, "gopher_dup_line_char_frac"
        toks = words(text)
        if not toks:
            return True, None
        wlen = np.fromiter((len(t) for t in toks), dtype=np.int64, count=len(toks))
        total = int(wlen.sum()) or 1
        wh = word_hashes(toks)
        cum = np.r_[0, np.cumsum(wlen)]
        for n, thr in sorted(c.top_n_grams.items()):
            if len(toks) < n:
                continue
            g = ngram_hashes(wh, n)
            uniq, first, counts = np.unique(g, return_index=True, return_counts=True)
            top = np.flatnonzero(counts == counts.max())
            k = int(top[np.argmin(first[top])])  # ties: the first-occurring n-gram (as Counter.most_common)
            if counts[k] > 1 and counts[k] * int(cum[first[k] + n] - cum[first[k]]) / total > thr:
                return False, f"gopher_top_{n}_gram"
        for n, thr in sorted(c.dup_n_grams.items()):
            if len(toks) < n:
                continue
            g = ngram_hashes(wh, n)
            _, inv = np.unique(g, return_inverse=True)
            first_pos = np.full(inv.max() + 1, len(g), dtype=np.int64)
            np.minimum.at(first_pos, inv, np.arange(len(g)))
            dup_starts = np.flatnonzero(first_pos[inv] != np.arange(len(g)))
            if len(dup_starts) == 0:
                continue
            diff = np.bincount(dup_starts, minlength=len(toks) + 1) - np.bincount(dup_starts + n, minlength=len(toks) + 1)
            covered = np.cumsum(diff[:-1]) > 0
            if int(wlen[covered].sum()) / total > thr:
                return False, f"gopher_dup_{n}_grams"
        return True, None


class C4Config(StepConfig):
    min_words_per_line: int = Field(default=3, ge=0)
    min_sentences: int = Field(default=5, ge=0, description="C4: pages with fewer sentences are dropped")
    max_word_length: int = Field(default=1000, ge=1)
    remove_lorem_ipsum: bool = True
    remove_curly_bracket: bool = True
    remove_javascript_lines: bool = True
    remove_policy_lines: bool = True
    require_terminal_punct: bool = True


_POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")


class C4Filter(Filter):
    """C4 rules: drop bad lines (too long word, no terminal punctuation, < 3 words, javascript, policy)
    from the text; drop pages with lorem ipsum or a curly bracket, or fewer than 5 sentences left."""

    Config = C4Config

    def filter(self, doc: Doc) -> tuple[bool, str | None]:
        c: C4Config = self.cfg  # type: ignore[assignment]
        text = doc["text"]
        low = text.lower()
        if c.remove_lorem_ipsum and "lorem ipsum" in low:
            return False, "c4_lorem_ipsum"
        if c.remove_curly_bracket and "{" in text:
            return False, "c4_curly_bracket"
        kept = []
        for line in text.split("\n"):
            s = line.strip()
            if not s:
                continue
            ls = s.lower()
            if any(len(w) > c.max_word_length for w in s.split()):
                continue
            if c.require_terminal_punct and (not s.endswith(_TERMINAL) or s.endswith("...")):
                continue
            if len(s.split()) < c.min_words_per_line:
                continue
            if c.remove_javascript_lines and "javascript" in ls:
                continue
            if c.remove_policy_lines and any(p in ls for p in _POLICY):
                continue
            kept.append(s)
        n_sent = sum(len([x for x in _SENT_SPLIT.split(k) if x.strip()]) for k in kept)
        if n_sent < c.min_sentences:
            return False, "c4_too_few_sentences"
        doc["text"] = "\n".join(kept)  # "only retained lines that ended in a terminal punctuation mark", ...
        return True, None


class FineWebConfig(StepConfig):
    line_punct_thr: float = Field(default=0.12, ge=0, le=1)
    short_line_thr: float = Field(default=0.67, ge=0, le=1)
    short_line_length: int = Field(default=30, ge=1)
    char_duplicates_ratio: float = Field(default=0.01, ge=0, le=1)
    new_line_ratio: float = Field(default=0.3, ge=0, le=1)


class FineWebFilter(Filter):
    """FineWeb rules: share of lines ending in punctuation, short lines, duplicated lines, newlines per word."""

    Config = FineWebConfig

    def filter(self, doc: Doc) -> tuple[bool, str | None]:
        c: FineWebConfig = self.cfg  # type: ignore[assignment]
        text = doc["text"]
        lines = _lines(text)
        if not lines:
            return False, "fineweb_empty"
        if sum(ln.endswith(_TERMINAL) for ln in lines) / len(lines) < c.line_punct_thr:
            return False, "fineweb_line_punct_ratio"
        if sum(len(ln) <= c.short_line_length for ln in lines) / len(lines) > c.short_line_thr:
            return False, "fineweb_short_line_ratio"
        _, dup_char = _dup_stats(lines)
        if dup_char > c.char_duplicates_ratio and len(lines) > 1:
            seen, dup = set(), 0
            for ln in lines:
                if ln in seen:
                    dup += len(ln)
                seen.add(ln)
            if dup / max(len(text.replace("\n", "")), 1) > c.char_duplicates_ratio:
                return False, "fineweb_char_dup_ratio"
        n_words = len(text.split()) or 1
        if text.count("\n") / n_words > c.new_line_ratio:
            return False, "fineweb_list_ratio"
        return True, None


class SentenceConfig(StepConfig):
    min_sentences: int = Field(default=5, ge=0)
    max_questionable_frac: float = Field(default=0.2, ge=0, le=1)


_QUESTIONABLE = ("lorem ipsum", "javascript", "cookie", "{", "}", "click here", "all rights reserved")


class SentenceFilter(Filter):
    """DCLM-style: drop docs with fewer than N sentences or too many questionable (boilerplate) sentences."""

    Config = SentenceConfig

    def filter(self, doc: Doc) -> tuple[bool, str | None]:
        c: SentenceConfig = self.cfg  # type: ignore[assignment]
        sents = [s.strip() for s in _SENT_SPLIT.split(doc["text"]) if s.strip()]
        if len(sents) < c.min_sentences:
            return False, "too_few_sentences"
        bad = sum(any(q in s.lower() for q in _QUESTIONABLE) or (s.isupper() and len(s) > 3) for s in sents)
        if bad / len(sents) >= c.max_questionable_frac and bad > 0:
            return False, "questionable_sentences"
        return True, None


class LengthConfig(StepConfig):
    min_chars: int = Field(default=1, ge=0)
    max_chars: int = Field(default=10_000_000, ge=1)


class LengthFilter(Filter):
    """Keep docs with a length (characters) within [min_chars, max_chars]."""

    Config = LengthConfig

    def filter(self, doc: Doc) -> tuple[bool, str | None]:
        c: LengthConfig = self.cfg  # type: ignore[assignment]
        n = len(doc["text"])
        if n < c.min_chars:
            return False, "too_short"
        if n > c.max_chars:
            return False, "too_long"
        return True, None
