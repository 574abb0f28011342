"""Text normalisation: Unicode NFC, control characters removed, whitespace tidied."""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

from olmoflow.data.steps.base import Context, Doc, Step, StepConfig, set_attr

# C0/C1 control characters except tab and newline (\r is folded into \n first)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b\ufeff]")
_TRAILING = re.compile(r"[ \t\u00a0\u2000-\u200a\u3000]+(?=\n|$)")
_ODD_SPACE = re.compile(r"[\u00a0\u2000-\u200a\u3000]")
_BLANKS = re.compile(r"\n{3,}")


class NormalizeConfig(StepConfig):
    form: Literal["NFC", "NFD", "NFKC", "NFKD", ""] = "NFC"  # "" skips Unicode normalisation
    strip_control: bool = True
    collapse_whitespace: bool = True
    max_blank_lines: int = 2


class Normalize(Step):
    """NFC, drop control characters, trailing spaces and runs of blank lines (keeps code indentation)."""

    Config = NormalizeConfig

    def process(self, doc: Doc, ctx: Context) -> Doc | None:
        cfg: NormalizeConfig = self.cfg  # type: ignore[assignment]
        text = doc["text"]
        new = unicodedata.normalize(cfg.form, text) if cfg.form else text
        new = new.replace("\r\n", "\n").replace("\r", "\n")
        if cfg.strip_control:
            new = _CONTROL.sub("", new)
        if cfg.collapse_whitespace:
            # exotic spaces become plain spaces; trailing whitespace goes; indentation stays
            new = _TRAILING.sub("", _ODD_SPACE.sub(" ", new))
            new = _BLANKS.sub("\n" * (cfg.max_blank_lines + 1) if cfg.max_blank_lines >= 0 else "\n\n", new)
            new = new.strip()
        if new != text:
            ctx.stats.incr(self.name, "docs_changed")
            set_attr(doc, "normalize_changed", True)
        if not new:
            ctx.exclude(doc, self.name, "empty_after_normalize")
            return None
        doc["text"] = new
        return doc
