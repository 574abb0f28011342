"""fastText quality classifier: train from positive/negative JSONL, score docs as an attribute.

Training uses one thread and a fixed seed so the model (and every score) is reproducible.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from pydantic import Field

from olmoflow.data.documents import iter_docs, list_doc_files
from olmoflow.data.steps.base import Context, Doc, Step, StepConfig, set_attr
from olmoflow.errors import OlmoflowError, require

POS, NEG = "__label__hq", "__label__lq"
_WS = re.compile(r"\s+")


def ft_text(text: str, max_chars: int = 10_000) -> str:
    """One-line, lowercased text as fastText expects it."""
    return _WS.sub(" ", text[:max_chars].lower()).strip()


def train_quality_classifier(
    positive: list[str] | str,
    negative: list[str] | str,
    out_path: str | Path,
    epoch: int = 10,
    lr: float = 0.3,
    dim: int = 32,
    word_ngrams: int = 2,
    seed: int = 0,
    max_docs: int = 50_000,
    bucket: int = 200_000,
) -> Path:
    """Train a fastText classifier (hq vs lq) and save it to ``out_path``."""
    require("fasttext", "data")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for label, inputs in ((POS, positive), (NEG, negative)):
        n = 0
        for f in list_doc_files(inputs):
            for d in iter_docs(f):
                if n >= max_docs:
                    break
                lines.append(f"{label} {ft_text(d['text'])}\n")
                n += 1
        if n == 0:
            raise OlmoflowError(f"quality classifier: no {label[9:]} training documents in {inputs}")
    fd, tmp = tempfile.mkstemp(suffix=".txt", dir=out_path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.writelines(lines)
        kwargs = dict(input=tmp, epoch=epoch, lr=lr, dim=dim, wordNgrams=word_ngrams, bucket=bucket, thread=1,
                      seed=seed, verbose=0)
        # fastText keeps process-global state that can turn a second training in one process into NaNs;
        # a fresh child process per training run keeps results reproducible
        from concurrent.futures import ProcessPoolExecutor

        from olmoflow.data.executors import _mp_context

        with ProcessPoolExecutor(1, mp_context=_mp_context()) as pool:
            pool.submit(_train_and_save, kwargs, str(out_path)).result()
    finally:
        os.unlink(tmp)
    return out_path


def _train_and_save(kwargs: dict, out_path: str) -> None:
    import fasttext

    model = fasttext.train_supervised(**kwargs)
    model.save_model(out_path + ".tmp")
    os.replace(out_path + ".tmp", out_path)


class QualityConfig(StepConfig):
    model: str | None = Field(default=None, description="fastText .bin; trained from positive/negative if unset")
    positive: list[str] = Field(default_factory=list)
    negative: list[str] = Field(default_factory=list)
    attribute: str = "quality_score"
    epoch: int = Field(default=10, ge=1)
    seed: int = 0


class QualityScore(Step):
    """Add ``attributes[attribute]`` = P(high quality) from the fastText classifier."""

    Config = QualityConfig

    def model_path(self, workdir: str) -> str:
        c: QualityConfig = self.cfg  # type: ignore[assignment]
        return c.model or os.path.join(workdir, f"{self.name}_model.bin")

    def prepare(self, workdir: str) -> None:
        """Driver-side, before any worker starts: train the classifier when no model is given."""
        c: QualityConfig = self.cfg  # type: ignore[assignment]
        self._workdir = workdir
        path = self.model_path(workdir)
        if c.model:
            if not Path(c.model).is_file():
                raise OlmoflowError(f"quality model not found: {c.model}")
            return
        if not (c.positive and c.negative):
            raise OlmoflowError(f"step '{self.name}': set 'model' or both 'positive' and 'negative'")
        if not Path(path).is_file():
            train_quality_classifier(c.positive, c.negative, path, epoch=c.epoch, seed=c.seed)

    def setup(self) -> None:
        fasttext = require("fasttext", "data")
        self._model = None
        self._fasttext = fasttext

    def process(self, doc: Doc, ctx: Context) -> Doc | None:
        if self._model is None:
            self._model = self._fasttext.load_model(self.model_path(ctx.workdir))
        labels, probs = self._model.predict(ft_text(doc["text"]), k=2)
        score = 0.0
        for lab, p in zip(labels, probs):
            if lab == POS:
                score = float(min(max(p, 0.0), 1.0))
        c: QualityConfig = self.cfg  # type: ignore[assignment]
        set_attr(doc, c.attribute, round(score, 5))
        return doc
