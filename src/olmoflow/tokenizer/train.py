"""Train the olmoflow byte-level BPE tokenizer and write an AutoTokenizer-loadable directory.

Pipeline (no normalizer, so every string round-trips byte for byte):
  cl100k-style regex split (letters, 1-3 digit groups, punctuation runs, whitespace runs)
  -> ByteLevel (every byte maps to one of 256 alphabet symbols: no unknown tokens)
  -> BPE merges learned by HF ``tokenizers``.

The 13 special tokens take ids 0..12, the byte alphabet the next 256 ids, merges the rest.
Training is deterministic: the trainer's tie-breaking depends only on the data, and
``max_docs`` sampling uses a seeded reservoir.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from olmoflow.data.documents import damage_warning, is_damage, list_doc_files
from olmoflow.errors import OlmoflowError
from olmoflow.io import write_jsonl
from olmoflow.tokenizer.chat import CHAT_TEMPLATE
from olmoflow.tokenizer.corpus import SUPPORTED, CorpusStats, iter_texts
from olmoflow.tokenizer.special import EOS, MARKUP_TOKENS, MIN_VOCAB_SIZE, PAD, SPECIAL_TOKENS

#: cl100k_base pre-tokenization regex (as in OLMo 2/3's tokenizer): contractions, words with one
#: leading non-letter, numbers in groups of at most 3 digits, punctuation runs, newlines, spaces.
SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
    r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

#: the same with every digit its own pre-token (``split_digits``): small models learn arithmetic
#: far more easily when 123 is "1", "2", "3" (LLaMA-style digit splitting)
SPLIT_PATTERN_DIGITS = SPLIT_PATTERN.replace(r"\p{N}{1,3}", r"\p{N}")

#: Files of a tokenizer directory, in the order they are written.
HF_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")


def build_tokenizer(split_digits: bool = False) -> Tokenizer:
    """An untrained tokenizer with the olmoflow pre-tokenizer and decoder."""
    tok = Tokenizer(models.BPE())
    pattern = SPLIT_PATTERN_DIGITS if split_digits else SPLIT_PATTERN
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    return tok


def _added_token(content: str) -> AddedToken:
    return AddedToken(content, special=content not in MARKUP_TOKENS, normalized=False)


def _reservoir(texts: Iterator[str], k: int, seed: int) -> list[str]:
    """A uniform sample of ``k`` texts (Algorithm R), kept in input order."""
    rng = random.Random(seed)
    sample: list[tuple[int, str]] = []
    for i, text in enumerate(texts):
        if i < k:
            sample.append((i, text))
        else:
            j = rng.randint(0, i)
            if j < k:
                sample[j] = (i, text)
    return [t for _, t in sorted(sample)]


def train_tokenizer(
    inputs: list[Path],
    out_dir: Path,
    vocab_size: int,
    min_frequency: int = 2,
    max_docs: int | None = None,
    quiet: bool = False,
    seed: int = 0,
    split_digits: bool = False,
) -> Path:
    """Train a byte-level BPE tokenizer on ``inputs`` and save it to ``out_dir``; returns ``out_dir``.

    ``max_docs`` trains on a seeded uniform sample of that many documents. ``split_digits`` makes
    every digit its own token (numbers are never merged), which tiny models need to learn arithmetic.
    ``vocab_size`` counts the special tokens and the 256 byte symbols; a small corpus may stop short
    of it (no pairs left).
    """
    from rich.markup import escape

    from olmoflow.progress import make_console, progress_bar

    if vocab_size < MIN_VOCAB_SIZE:
        raise OlmoflowError(
            f"vocab_size {vocab_size} is too small: need at least {MIN_VOCAB_SIZE} "
            f"({len(SPECIAL_TOKENS)} special tokens + 256 byte symbols)"
        )
    if min_frequency < 1:
        raise OlmoflowError(f"min_frequency must be >= 1, got {min_frequency}")
    if max_docs is not None and max_docs < 1:
        raise OlmoflowError(f"max_docs must be >= 1, got {max_docs}")
    if not inputs:
        raise OlmoflowError("no input paths given")
    files = list_doc_files(inputs, SUPPORTED)
    out_dir = Path(out_dir)
    blocker = next((p for p in (out_dir, *out_dir.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():  # fail now, not after hours of training
        raise OlmoflowError(f"cannot write tokenizer to {out_dir}: {blocker} is not a directory")
    console = make_console(stderr=True, quiet=quiet)

    stats = CorpusStats()
    total_bytes = sum(p.stat().st_size for p in files)
    progress = progress_bar(quiet=quiet, transfer=True, fields=("{task.fields[docs]:,} docs",), console=console)
    tok = build_tokenizer(split_digits)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[_added_token(t) for t in SPECIAL_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    with progress:
        task = progress.add_task("reading corpus", total=total_bytes, docs=0)

        def on_progress(nbytes: int) -> None:
            progress.update(task, completed=nbytes, docs=stats.n_docs)

        texts = iter_texts(files, stats, on_progress)
        if max_docs is not None:
            texts = iter(_reservoir(texts, max_docs, seed))
        counted = _Counter(texts, on_end=lambda: progress.update(task, description="computing merges"))
        tok.train_from_iterator(counted, trainer=trainer)
        progress.update(task, completed=total_bytes, docs=stats.n_docs)
    if counted.n == 0:
        message = f"empty corpus: no text found in {', '.join(str(p) for p in inputs)}"
        if stats.quarantined:
            first = stats.quarantined[0]
            message += (
                f" ({len(stats.quarantined)} bad record(s) skipped, e.g. "
                f"{first['file']}:{first['line']}: {first['reason']})"
            )
        raise OlmoflowError(message)
    # The trainer registers special tokens as special; markup tokens must stay non-special.
    tok = _fix_added_tokens(tok)

    out_dir.mkdir(parents=True, exist_ok=True)
    write_tokenizer_dir(tok, out_dir)
    info = {
        "format": "olmoflow-tokenizer-v1",
        "inputs": [str(p) for p in files],
        "vocab_size_requested": vocab_size,
        "vocab_size": tok.get_vocab_size(with_added_tokens=True),
        "min_frequency": min_frequency,
        "max_docs": max_docs,
        "seed": seed,
        "docs_read": stats.n_docs,
        "docs_trained": counted.n,
        "bytes_read": stats.n_bytes,
        "quarantined": len(stats.quarantined),
    }
    (out_dir / "train_info.json").write_text(json.dumps(info, indent=2) + "\n")
    quarantine = out_dir / "quarantine.jsonl"
    if stats.quarantined:
        write_jsonl(quarantine, stats.quarantined)
        for q in stats.quarantined:
            if is_damage(q):
                console.print(damage_warning(q), soft_wrap=True, markup=False, highlight=False)
        first = stats.quarantined[0]
        console.print(
            f"[yellow]warning:[/] skipped {len(stats.quarantined)} bad record(s), e.g. "
            + escape(f"{first['file']}:{first['line']}: {first['reason']} (all in {quarantine})"),
            soft_wrap=True,
        )
    elif quarantine.exists():
        quarantine.unlink()
    console.print(
        f"trained tokenizer: vocab {info['vocab_size']:,} on {info['docs_trained']:,} docs "
        f"(read {stats.n_docs:,} docs, {stats.n_bytes / 1e6:.1f} MB of text) -> {out_dir}",
        soft_wrap=True,
        markup=False,
    )
    return out_dir


class _Counter:
    """Wraps an iterator of texts and counts the non-empty ones it hands to the trainer."""

    def __init__(self, texts: Iterator[str], on_end: Callable[[], None]):
        self.texts = texts
        self.on_end = on_end
        self.n = 0

    def __iter__(self) -> Iterator[str]:
        for text in self.texts:
            if text:
                self.n += 1
                yield text
        self.on_end()


def _fix_added_tokens(tok: Tokenizer) -> Tokenizer:
    data = json.loads(tok.to_str())
    for entry in data["added_tokens"]:
        entry["special"] = entry["content"] not in MARKUP_TOKENS
    return Tokenizer.from_str(json.dumps(data))


def tokenizer_config(tok: Tokenizer) -> dict[str, Any]:
    """The tokenizer_config.json contents (transformers 4.x and 5.x read it)."""
    decoder = {
        str(tok.token_to_id(t)): {
            "content": t,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": t not in MARKUP_TOKENS,
        }
        for t in SPECIAL_TOKENS
    }
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": None,
        "eos_token": EOS,
        "pad_token": PAD,
        "unk_token": None,
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "added_tokens_decoder": decoder,
        "chat_template": CHAT_TEMPLATE,
    }


def write_tokenizer_dir(tok: Tokenizer, out_dir: Path) -> None:
    """Write tokenizer.json, tokenizer_config.json, special_tokens_map.json and chat_template.jinja."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "tokenizer.json").write_text(tok.to_str(pretty=True))
    _write_configs(tok, out_dir)


def _write_configs(tok: Tokenizer, out_dir: Path) -> None:
    config = json.dumps(tokenizer_config(tok), indent=2, ensure_ascii=False)
    (out_dir / "tokenizer_config.json").write_text(config + "\n")
    special_map = {"eos_token": EOS, "pad_token": PAD}
    (out_dir / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2) + "\n")
    (out_dir / "chat_template.jinja").write_text(CHAT_TEMPLATE)


def save_for_hf(tok_dir: Path, out_dir: Path) -> list[Path]:
    """Copy the tokenizer files of ``tok_dir`` into an HF export directory ``out_dir``.

    Only tokenizer files are copied (tokenizer.json, tokenizer_config.json, special_tokens_map.json,
    chat_template.jinja); the tokenizer config is rewritten from tokenizer.json so a directory
    holding only tokenizer.json also works.
    """
    src = Path(tok_dir)
    path = src / "tokenizer.json" if src.is_dir() else src
    if not path.is_file():
        raise OlmoflowError(f"tokenizer not found: {path}")
    tok = Tokenizer.from_file(str(path))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if path.resolve() != (out_dir / "tokenizer.json").resolve():
        shutil.copyfile(path, out_dir / "tokenizer.json")
    _write_configs(tok, out_dir)
    return [out_dir / name for name in HF_FILES]
