"""PII masking: e-mail addresses, phone numbers and IP addresses replaced by Dolma-style tags."""

from __future__ import annotations

import re

from olmoflow.data.steps.base import Context, Doc, Step, StepConfig, set_attr

EMAIL = re.compile(r"\b[A-Za-z0-9._%+\-]+@(?:[A-Za-z0-9\-]+\.)+[A-Za-z]{2,}\b")
PHONE = re.compile(
    r"(?<![\w.])(?:\+?\d{1,3}[\s.\-]?)?(?:\(\d{3}\)\s?|\d{3}[\s.\-])\d{3}[\s.\-]\d{4}(?!\w)(?!\.\d)"
)
IPV4 = re.compile(r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?!\w)(?!\.\d)")


class PiiConfig(StepConfig):
    email: bool = True
    phone: bool = True
    ip: bool = True
    email_tag: str = "|||EMAIL_ADDRESS|||"
    phone_tag: str = "|||PHONE_NUMBER|||"
    ip_tag: str = "|||IP_ADDRESS|||"


class PiiMask(Step):
    """Replace PII with tags; counts per kind go to stats and to the doc's attributes."""

    Config = PiiConfig

    def process(self, doc: Doc, ctx: Context) -> Doc | None:
        cfg: PiiConfig = self.cfg  # type: ignore[assignment]
        text = doc["text"]
        counts = {}
        for kind, on, pat, tag in (
            ("email", cfg.email, EMAIL, cfg.email_tag),
            ("ip", cfg.ip, IPV4, cfg.ip_tag),
            ("phone", cfg.phone, PHONE, cfg.phone_tag),
        ):
            if not on:
                continue
            text, n = pat.subn(tag, text)
            if n:
                counts[kind] = n
                ctx.stats.incr(self.name, f"{kind}_masked", n)
        if counts:
            set_attr(doc, "pii", counts)
            ctx.stats.incr(self.name, "docs_with_pii")
            doc["text"] = text
        return doc
