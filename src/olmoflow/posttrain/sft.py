"""Supervised fine-tuning on chat data: ``olmoflow sft --config FILE``, flow stage ``sft``.

SFT is the language-modelling objective on other batches (REFERENCE.md §4): conversations rendered
with the one chat template, several packed into each ``seq_len`` sequence with intra-document
attention (``doc_ids``: no token attends across a conversation boundary, positions restart at 0),
and labels only on assistant tokens (what the model says in an assistant turn, its closing
``<|im_end|>`` included). The loss is the sum of cross-entropy over assistant tokens divided by the
number of assistant tokens in the whole global batch — the LM objective's token mean, so it is
correct under gradient accumulation and FSDP. Everything else (schedule, checkpoints with exact
resume, torchrun/FSDP2, logging, in-loop eval) is the one training loop's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, model_validator

from olmoflow.config import Config
from olmoflow.errors import OlmoflowError
from olmoflow.train.config import OptimizerConfig, ScheduleConfig, TrainConfig
from olmoflow.train.data import IGNORE_INDEX, pack_best_fit, packed_item
from olmoflow.train.lm import LMObjective
from olmoflow.train.objective import RunContext

__all__ = ["ChatDataConfig", "PackedChatSource", "SFTConfig", "SFTObjective", "sft"]


class ChatDataConfig(Config):
    """Conversations to train on (JSONL / Parquet in the HF ``messages`` form)."""

    paths: list[str] = Field(default_factory=list)
    val_paths: list[str] = Field(default_factory=list)
    #: per-file target ratios, keyed by file stem (empty: natural proportions)
    mixture: dict[str, float] = Field(default_factory=dict)
    #: True: pack several conversations per sequence (document masks); False: one per sequence
    pack: bool = True


class SFTConfig(TrainConfig):
    """A :class:`TrainConfig` whose data are conversations; ``init_from`` and ``tokenizer`` required."""

    run_dir: str = "runs/sft"
    data: ChatDataConfig = Field(default_factory=ChatDataConfig)  # type: ignore[assignment]
    #: tokenizer directory (its chat template renders the conversations)
    tokenizer: str | None = None
    seq_len: int = Field(1024, gt=1)
    #: OLMo 3 SFT: linear decay to 0 (warm up with schedule.warmup_steps)
    schedule: ScheduleConfig = Field(default_factory=lambda: ScheduleConfig(name="linear", final_lr_ratio=0.0))
    optimizer: OptimizerConfig = Field(default_factory=lambda: OptimizerConfig(lr=5e-5, weight_decay=0.0, z_loss=0.0))

    @model_validator(mode="after")
    def _need_inputs(self) -> SFTConfig:
        if not self.init_from:
            raise ValueError("sft needs 'init_from' (the base model checkpoint to fine-tune)")
        if not self.tokenizer:
            raise ValueError("sft needs 'tokenizer' (the directory with tokenizer.json)")
        if not self.data.paths:
            raise ValueError("sft needs 'data.paths' (chat JSONL/Parquet files)")
        return self


def chat_labels(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Next-token labels of one conversation: ``ids[j+1]`` where token ``j+1`` is assistant output,
    else ignored; the last position predicts nothing (no target inside the conversation)."""
    labels = np.full(len(ids), IGNORE_INDEX, dtype=np.int64)
    labels[:-1] = np.where(mask[1:], ids[1:], IGNORE_INDEX)
    return labels


class PackedChatSource:
    """Conversations packed best-fit into ``seq_len`` sequences (or one per sequence), each with its
    own ``doc_ids`` and labels on assistant tokens only; padding has its own doc id and no labels.
    Same item format as the LM objective's packed token sources."""

    def __init__(self, name: str, examples: Sequence[Any], seq_len: int, pad_token_id: int, pack: bool = True):
        self.name, self.seq_len, self.pad = name, seq_len, pad_token_id
        self.examples = list(examples)
        lengths = np.array([len(e.ids) for e in self.examples], dtype=np.int64)
        too_long = np.flatnonzero(lengths > seq_len)
        if too_long.size:  # load_chat_examples quarantines these; a direct caller gets told
            e = self.examples[int(too_long[0])]
            raise OlmoflowError(f"{e.source}: conversation of {len(e.ids)} tokens exceeds seq_len {seq_len}")
        self.bins = pack_best_fit(lengths, seq_len) if pack else [[i] for i in range(len(self.examples))]

    def __len__(self) -> int:
        return len(self.bins)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        pieces = []
        for j in sorted(self.bins[i]):  # conversations in file order inside a sequence
            ex = self.examples[j]
            ids = np.asarray(ex.ids, dtype=np.int64)
            pieces.append((ids, chat_labels(ids, np.asarray(ex.mask, dtype=bool))))
        return packed_item(pieces, self.seq_len, self.pad)


class SFTObjective(LMObjective):
    """The LM objective over packed conversations with assistant-only labels."""

    def __init__(self, cfg: SFTConfig, name: str = "sft"):
        super().__init__(cfg, name=name)
        self.reports: dict[str, Any] = {}

    def build_sources(self, run: RunContext) -> tuple[list, list | None]:
        cfg: SFTConfig = self.cfg  # type: ignore[assignment]
        train = self._sources(cfg.data.paths, run, "train")
        val = self._sources(cfg.data.val_paths, run, "val") if cfg.data.val_paths else None
        return train, val

    def _sources(self, paths: list[str], run: RunContext, split: str) -> list[PackedChatSource]:
        from olmoflow.posttrain.chat_data import load_chat_examples
        from olmoflow.tokenizer import Tok

        cfg: SFTConfig = self.cfg  # type: ignore[assignment]
        tok = Tok.from_dir(cfg.tokenizer)
        if tok.vocab_size > run.model_cfg.vocab_size:
            raise OlmoflowError(f"key 'tokenizer': {cfg.tokenizer} has {tok.vocab_size} tokens, more than the "
                                f"model's vocab_size {run.model_cfg.vocab_size} ({cfg.init_from})")
        out = []
        for path in paths:
            quarantine = Path(cfg.run_dir) / "quarantine" / f"{split}-{Path(path).name}.jsonl"
            examples, report = load_chat_examples([path], tok, cfg.seq_len, quarantine_path=quarantine)
            self.reports[f"{split}:{path}"] = report
            out.append(PackedChatSource(_stem(path), examples, cfg.seq_len, run.model_cfg.pad_token_id,
                                        pack=cfg.data.pack))
        names = [s.name for s in out]
        if len(set(names)) != len(names):
            raise OlmoflowError(f"key 'data.{'paths' if split == 'train' else 'val_paths'}': two files share a "
                                f"name {names} (the mixture is keyed by file stem)")
        return out


def _stem(path: str) -> str:
    name = Path(path).name
    for suffix in (".gz", ".zst", ".jsonl", ".json", ".parquet"):
        name = name.removesuffix(suffix)
    return name


def sft(cfg: SFTConfig, quiet: bool = False, resume: bool = False) -> dict[str, Any]:
    """Fine-tune ``cfg.init_from`` on ``cfg.data``; returns the final metrics."""
    from olmoflow.train.trainer import train

    return train(cfg, SFTObjective(cfg), quiet=quiet, resume=resume)
