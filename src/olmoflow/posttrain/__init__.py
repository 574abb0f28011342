"""Post-training: chat data, SFT, DPO (REFERENCE.md §4).

    from olmoflow.posttrain import load_chat_examples, make_chat_data

The names above are imported from their submodules (``chat_data``, ``synth``) on first use, so
importing the package costs nothing and pulls in no torch; import ``sft``, ``dpo``, ... directly.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ChatDataReport": "chat_data",
    "ChatExample": "chat_data",
    "load_chat_examples": "chat_data",
    "make_chat_data": "synth",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"olmoflow.posttrain.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'olmoflow.posttrain' has no attribute {name!r}")
