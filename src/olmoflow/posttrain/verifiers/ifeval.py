"""Instruction following: the fraction of the record's ``constraints`` the response satisfies
(``olmoflow.scoring.instructions``; partial credit)."""

from __future__ import annotations

from olmoflow.posttrain.verifiers import register
from olmoflow.posttrain.verifiers.math import _THINK
from olmoflow.scoring.instructions import check


@register("ifeval", requires="constraints")
def score(record, response):
    value, reasons = check(_THINK.sub("", response).strip(), record["constraints"])
    return value, "; ".join(reasons) or "all constraints met"
