"""The step contract (datatrove-like).

A step takes an iterator of documents and yields documents. Filters implement
``filter(doc) -> (keep, reason)``; removed documents go to ``ctx.exclude`` which writes them with
the reason and counts them. Global steps (dedup across shards, upsampling) run in three phases:
``collect`` per shard (parallel), ``decide`` once over all summaries, ``apply`` per shard.
Heavy resources (models, indexes) are built lazily in :meth:`Step.setup`, once per process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, ClassVar

from pydantic import Field

from olmoflow.config import Config
from olmoflow.data.stats import Stats

Doc = dict[str, Any]


class StepConfig(Config):
    """Fields every step accepts."""

    step: str
    name: str | None = Field(default=None, description="unique name (defaults to the step type)")
    sources: list[str] | None = Field(default=None, description="apply only to docs of these sources")
    skip_sources: list[str] = Field(default_factory=list, description="never apply to docs of these sources")
    enabled: bool = Field(default=True, description="set false to drop the step from the recipe")


class Context:
    """What a step sees of the run: shared stats, the exclusion sink, the seed, the work dir."""

    def __init__(
        self,
        stats: Stats,
        exclude_sink: Callable[[Doc, str, str], None] | None = None,
        seed: int = 0,
        workdir: str = "",
        shard_index: int = 0,
        read_shard: Callable[[int], Iterator[Doc]] | None = None,
        n_shards: int = 1,
    ):
        self.stats = stats
        self._sink = exclude_sink
        self.seed = seed
        self.workdir = workdir
        self.shard_index = shard_index
        self.read_shard = read_shard
        self.n_shards = n_shards

    def exclude(self, doc: Doc, step: str, reason: str) -> None:
        """Record that ``step`` removed ``doc`` because of ``reason``."""
        if not doc.get("_copy"):
            self.stats.removed(step, reason)
        if self._sink is not None:
            self._sink(doc, step, reason)


def set_attr(doc: Doc, key: str, value: Any) -> None:
    doc.setdefault("attributes", {})[key] = value


class Step:
    """A map step: ``run(docs, ctx)`` yields the documents it keeps (possibly modified)."""

    Config: ClassVar[type[StepConfig]] = StepConfig
    kind: ClassVar[str] = "map"

    def __init__(self, cfg: StepConfig):
        self.cfg = cfg
        self.name = cfg.name or cfg.step
        self._ready = False
        self._sources = set(cfg.sources) if cfg.sources is not None else None
        self._skip = set(cfg.skip_sources)

    def prepare(self, workdir: str) -> None:
        """Driver-side preparation before any worker starts (e.g. train a classifier)."""

    def setup(self) -> None:
        """Load heavy resources; called once per process before the first document."""

    def ensure_setup(self) -> None:
        if not self._ready:
            self.setup()
            self._ready = True

    def applies(self, doc: Doc) -> bool:
        src = doc.get("source")
        return (self._sources is None or src in self._sources) and src not in self._skip

    def process(self, doc: Doc, ctx: Context) -> Doc | None:
        """Transform one document; return None to drop it (after calling ``ctx.exclude``)."""
        return doc

    def run(self, docs: Iterator[Doc], ctx: Context) -> Iterator[Doc]:
        self.ensure_setup()
        for doc in docs:
            if not self.applies(doc):
                yield doc
                continue
            out = self.process(doc, ctx)
            if out is not None:
                yield out


class Filter(Step):
    """A step that keeps or removes whole documents: ``filter(doc) -> (keep, reason)``."""

    def filter(self, doc: Doc) -> tuple[bool, str | None]:
        raise NotImplementedError

    def process(self, doc: Doc, ctx: Context) -> Doc | None:
        keep, reason = self.filter(doc)
        if keep:
            return doc
        ctx.exclude(doc, self.name, reason or "filtered")
        return None


class GlobalStep(Step):
    """A step needing the whole corpus: collect (per shard) -> decide (once) -> apply (per shard)."""

    kind: ClassVar[str] = "global"

    def collect(self, docs: Iterator[Doc], ctx: Context) -> Any:
        """Summarise one shard (picklable); documents arrive in the same order ``apply`` sees."""
        for _ in docs:
            pass
        return None

    def decide(self, summaries: list[Any], ctx: Context) -> list[Any]:
        """Turn all shard summaries into one picklable decision per shard."""
        return [None] * len(summaries)

    def apply(self, docs: Iterator[Doc], decision: Any, ctx: Context) -> Iterator[Doc]:
        """Default: ``decision`` maps a document's index in the shard to a removal reason, or (an int) for a
        kept document to the size of its duplicate cluster (kept as ``<step>_cluster_size``)."""
        for i, d in enumerate(docs):
            reason = decision.get(i) if decision else None
            if reason is None:
                yield d
            elif isinstance(reason, int):
                set_attr(d, f"{self.name}_cluster_size", reason)
                yield d
            else:
                ctx.exclude(d, self.name, reason)
