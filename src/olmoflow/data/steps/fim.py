"""Fill-in-the-middle transform for code (PSM order with OLMo/StarCoder-style sentinels)."""

from __future__ import annotations

from pydantic import Field

from olmoflow.data.steps.base import Context, Doc, Step, StepConfig, set_attr
from olmoflow.data.text import stable_unit

FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE = "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"


class FimConfig(StepConfig):
    rate: float = Field(default=0.5, ge=0.0, le=1.0, description="fraction of documents transformed")
    prefix_token: str = FIM_PREFIX
    suffix_token: str = FIM_SUFFIX
    middle_token: str = FIM_MIDDLE
    seed: int = 0


def fim_split(text: str, u1: float, u2: float) -> tuple[str, str, str]:
    """Split ``text`` at two points (fractions u1, u2 in [0,1)) into prefix, middle, suffix."""
    a, b = sorted((int(u1 * (len(text) + 1)), int(u2 * (len(text) + 1))))
    return text[:a], text[a:b], text[b:]


class FimTransform(Step):
    """Rewrite ``rate`` of documents as ``<|fim_prefix|>P<|fim_suffix|>S<|fim_middle|>M`` (deterministic per id)."""

    Config = FimConfig

    def process(self, doc: Doc, ctx: Context) -> Doc | None:
        cfg: FimConfig = self.cfg  # type: ignore[assignment]
        key = doc["id"] + ("#" + str(doc["_copy"]) if doc.get("_copy") else "")
        if stable_unit(key, cfg.seed + ctx.seed) >= cfg.rate:
            return doc
        prefix, middle, suffix = fim_split(
            doc["text"], stable_unit(key + ":a", cfg.seed), stable_unit(key + ":b", cfg.seed)
        )
        doc["text"] = f"{cfg.prefix_token}{prefix}{cfg.suffix_token}{suffix}{cfg.middle_token}{middle}"
        set_attr(doc, "fim", True)
        ctx.stats.incr(self.name, "docs_fim")
        return doc
