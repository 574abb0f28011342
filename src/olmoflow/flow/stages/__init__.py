"""Built-in stage types, one small module each.

Importing this package only registers the types: every wrapper imports the package it wraps
(olmoflow.data, olmoflow.train, ...) inside its ``run`` function, so planning a flow, or running
one that does not use a stage, never needs that stage's extras.
"""

from olmoflow.flow.stages import pretrain  # noqa: F401
from olmoflow.flow.stages import planned  # noqa: F401, I001  (last: real wrappers win)
