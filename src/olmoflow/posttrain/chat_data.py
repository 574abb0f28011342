"""Chat data for post-training: conversations in the HF ``messages`` form -> token ids + loss masks.

Input: JSON lines (plain, ``.gz`` or ``.zst``) or Parquet, one conversation per record::

    {"id": "...", "messages": [{"role": "user", "content": "..."},
                               {"role": "assistant", "content": "...", "reasoning_content": "...",
                                "tool_calls": [{"type": "function",
                                                "function": {"name": "f", "arguments": {"x": 1}}}]},
                               {"role": "environment", "content": "..."}, ...],
     "tools": [{"type": "function", "function": {"name": "f", "parameters": {...}}}]}

A preference record (``{"prompt": [messages], "chosen": message, "rejected": ...}``, as the pairs stage
writes) is read as its prompt + chosen answer.

Roles: ``system``, ``user``, ``assistant``, ``environment`` (``tool`` is an alias, as in the chat
template). ``id`` and ``tools`` are optional. Content is a string (an assistant turn that makes tool
calls may have none); ``reasoning_content`` renders as ``<think>…</think>``; tool-call ``arguments``
are an object or a JSON string holding one (in Parquet, use strings: Arrow merges struct fields).

Each conversation is rendered with the one chat template (:mod:`olmoflow.tokenizer.chat`) and
tokenized by :meth:`Tok.encode_chat_with_mask`: ``mask`` is True exactly on what the model says in
assistant turns (reasoning, content, tool calls and the closing ``<|im_end|>``).

A bad record is never dropped silently nor cut mid-turn: it is quarantined whole with a reason
(the first word is the reason's key, counted in :class:`ChatDataReport`), written as
``{"file", "line", "reason", "raw"?}`` like curate's quarantine records. Reason keys: the readers'
(``malformed_json``, ``invalid_utf8``, ``too_large``, ``truncated_file``, ``corrupt_file``,
``unreadable_file``) and ``not_an_object``, ``empty_messages``, ``bad_message``, ``unknown_role``,
``non_string_content``, ``malformed_tool_call``, ``bad_tools``, ``no_assistant_turn``, ``too_long``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from olmoflow.data.documents import DamagedFile, open_compressed
from olmoflow.errors import OlmoflowError, require
from olmoflow.io import write_jsonl
from olmoflow.tokenizer.chat import parse_function_calls, render_tool_calls

__all__ = ["ROLES", "ChatDataReport", "ChatExample", "check_conversation", "iter_chat_records",
           "load_chat_examples"]

#: accepted message roles (``tool`` renders as ``environment``)
ROLES = ("system", "user", "assistant", "environment", "tool")
_REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")
#: longest line read from a JSONL file (longer ones are quarantined ``too_large``, never loaded whole)
MAX_LINE_BYTES = 16 * 1024 * 1024


@dataclass
class ChatExample:
    """One tokenized conversation: ``mask[i]`` is True where ``ids[i]`` is assistant output."""

    ids: np.ndarray  # int32
    mask: np.ndarray  # bool
    id: str
    source: str  # file:line


@dataclass
class ChatDataReport:
    """What :func:`load_chat_examples` read: kept/total conversations, quarantine counts per reason."""

    files: list[str]
    total: int = 0
    kept: int = 0
    tokens: int = 0
    assistant_tokens: int = 0
    quarantined: dict[str, int] = field(default_factory=dict)
    quarantine_path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"files": self.files, "total": self.total, "kept": self.kept, "tokens": self.tokens,
                "assistant_tokens": self.assistant_tokens, "quarantined": dict(self.quarantined),
                "quarantine_path": self.quarantine_path}


# ------------------------------------------------------------------------------------ reading
Record = tuple[int, Any, str | None]  # (line or row, parsed object, reader's quarantine reason)


def _iter_jsonl(path: Path) -> Iterator[Record]:
    """(line, object, None) per non-blank line; (line, raw, reason) for a line that cannot be read."""
    line = 0
    try:
        with open_compressed(path) as f:
            while raw := f.readline(MAX_LINE_BYTES + 1):
                line += 1
                if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                    while (chunk := f.readline(1 << 20)) and not chunk.endswith(b"\n"):
                        pass
                    yield line, None, f"too_large (line longer than {MAX_LINE_BYTES} bytes)"
                    continue
                if not raw.strip():
                    continue
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    yield line, None, f"invalid_utf8 ({e.reason} at byte {e.start})"
                    continue
                try:
                    yield line, json.loads(text), None
                except json.JSONDecodeError as e:
                    yield line, text[:200], f"malformed_json ({e.msg}, column {e.colno})"
    except DamagedFile as e:
        yield line + 1, None, str(e)
    except OSError as e:
        yield line + 1, None, f"unreadable_file ({type(e).__name__}: {e})"


def _iter_parquet(path: Path) -> Iterator[Record]:
    pq = require("pyarrow.parquet", "data")
    row = 0
    try:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
            for obj in batch.to_pylist():
                row += 1
                yield row, obj, None
    except Exception as e:  # pyarrow raises its own error types for cut or corrupt files
        yield row + 1, None, f"unreadable_file ({type(e).__name__}: {e})"


def iter_chat_records(path: str | Path) -> Iterator[Record]:
    """Raw records of one chat file (JSONL, .gz, .zst or Parquet): ``(line, obj, reason)``, where
    ``reason`` is set (and ``obj`` is the raw text or None) when the line could not be parsed."""
    path = Path(path)
    if not path.is_file():
        raise OlmoflowError(f"{path}: chat data file not found")
    return _iter_parquet(path) if path.name.endswith(".parquet") else _iter_jsonl(path)


# --------------------------------------------------------------------------------- validation
def _check_tool_calls(calls: Any, where: str) -> str | None:
    if isinstance(calls, (str, bytes, Mapping)) or not isinstance(calls, Sequence):
        return f"malformed_tool_call ({where}: tool_calls must be a list)"
    for i, call in enumerate(calls):
        fn = call.get("function", call) if isinstance(call, Mapping) else None
        if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str) or not fn["name"]:
            return f"malformed_tool_call ({where}, call {i}: needs a function 'name')"
        args = fn.get("arguments", {})
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except ValueError:
                return f"malformed_tool_call ({where}, call {i}: arguments are not JSON)"
        if not isinstance(args, Mapping):
            return f"malformed_tool_call ({where}, call {i}: arguments must be an object)"
        # the rendered call must parse back to itself, or the model learns calls a server cannot read
        _, parsed = parse_function_calls(render_tool_calls([call]))
        if len(parsed) != 1 or parsed[0]["function"]["name"] != fn["name"] \
                or json.loads(parsed[0]["function"]["arguments"]) != json.loads(json.dumps(args)):
            return f"malformed_tool_call ({where}, call {i}: {fn['name']!r} does not render as name(arg=json, ...))"
    return None


def chosen_conversation(obj: Any) -> Any:
    """A preference record (``prompt`` messages + ``chosen``, no ``messages``: the pairs stage's and TRL's
    conversational form) read as the conversation prompt + chosen answer, so SFT can train on the chosen
    side of DPO data (the control for delta-learning DPO); anything else is returned unchanged."""
    if not isinstance(obj, Mapping) or "messages" in obj or "prompt" not in obj or "chosen" not in obj:
        return obj
    prompt, chosen = obj["prompt"], obj["chosen"]
    if isinstance(prompt, str):
        prompt = [{"role": "user", "content": prompt}]
    if isinstance(chosen, str):
        chosen = [{"role": "assistant", "content": chosen}]
    elif isinstance(chosen, Mapping):
        chosen = [chosen]
    if not isinstance(prompt, list) or not isinstance(chosen, list):
        return obj
    return {**{k: v for k, v in obj.items() if k not in ("prompt", "chosen", "rejected")},
            "messages": [*prompt, *chosen]}


def check_conversation(obj: Any) -> str | None:
    """Why ``obj`` is not a valid conversation record (a quarantine reason), or None if it is."""
    if not isinstance(obj, Mapping):
        return f"not_an_object (a JSON {type(obj).__name__})"
    messages = obj.get("messages")
    if messages is None or isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Sequence):
        return "empty_messages (no 'messages' list)"
    if not messages:
        return "empty_messages (the 'messages' list is empty)"
    tools = obj.get("tools")
    if tools is not None:
        if isinstance(tools, (str, bytes, Mapping)) or not isinstance(tools, Sequence):
            return "bad_tools ('tools' must be a list of function specs)"
        for i, tool in enumerate(tools):
            fn = tool.get("function", tool) if isinstance(tool, Mapping) else None
            if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str):
                return f"bad_tools (tool {i} has no function 'name')"
    has_assistant = False
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            return f"bad_message (message {i} is not an object)"
        role = m.get("role")
        if role not in ROLES:
            return f"unknown_role (message {i} has role {role!r}; allowed: {', '.join(ROLES)})"
        content = m.get("content")
        calls = m.get("tool_calls")
        if not (isinstance(content, str) or content is None and role == "assistant" and calls):
            return f"non_string_content (message {i} ({role}) has {type(content).__name__} content)"
        for key in _REASONING_FIELDS:
            if m.get(key) is not None and not isinstance(m[key], str):
                return f"non_string_content (message {i} ({role}) has a non-string '{key}')"
        if calls:
            if role != "assistant":
                return f"malformed_tool_call (message {i}: only assistant messages make tool calls, not {role})"
            bad = _check_tool_calls(calls, f"message {i}")
            if bad:
                return bad
        has_assistant |= role == "assistant"
    if not has_assistant:
        return "no_assistant_turn (nothing to train on)"
    return None


# -------------------------------------------------------------------------------------- loading
def _quarantine(file: str, line: int, reason: str, raw: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {"file": file, "line": line, "reason": reason}
    if raw is not None:
        rec["raw"] = (raw if isinstance(raw, str) else json.dumps(raw, ensure_ascii=False, default=str))[:200]
    return rec


def load_chat_examples(
    paths: Sequence[str | Path],
    tok: Any,
    max_len: int,
    quarantine_path: str | Path | None = None,
) -> tuple[list[ChatExample], ChatDataReport]:
    """Read, validate and tokenize the conversations of ``paths`` (in order; deterministic).

    ``tok`` is an :class:`olmoflow.tokenizer.Tok`. A conversation longer than ``max_len`` tokens
    is quarantined whole (``too_long``). Bad records go to ``quarantine_path`` (JSONL) when given.
    OlmoflowError for a missing file or a file without one valid conversation (after writing the
    quarantine, so its reasons can be read).
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    report = ChatDataReport(files=[str(p) for p in paths])
    examples: list[ChatExample] = []
    bad: list[dict[str, Any]] = []
    reasons: Counter[str] = Counter()
    empty_files = []
    for path in paths:
        name = str(path)
        kept_before = len(examples)
        for line, obj, reason in iter_chat_records(path):
            report.total += 1
            if reason is None:
                obj = chosen_conversation(obj)
                reason = check_conversation(obj)
            if reason is None:
                try:
                    ids, mask = tok.encode_chat_with_mask(obj["messages"], obj.get("tools") or None)
                except OlmoflowError as e:  # what validation did not foresee (e.g. a lone surrogate)
                    reason = f"bad_message ({e})"
                else:
                    if len(ids) > max_len:
                        reason = f"too_long ({len(ids)} tokens > max_len {max_len})"
            if reason is not None:
                reasons[reason.split(" ")[0]] += 1
                bad.append(_quarantine(name, line, reason, obj))
                continue
            ex_id = obj.get("id")
            examples.append(ChatExample(
                ids=np.asarray(ids, dtype=np.int32), mask=np.asarray(mask, dtype=bool),
                id=str(ex_id) if ex_id not in (None, "") else f"{Path(name).name}:{line}",
                source=f"{name}:{line}"))
        if len(examples) == kept_before:
            empty_files.append(name)
    report.kept = len(examples)
    report.quarantined = dict(sorted(reasons.items()))
    report.tokens = sum(len(e.ids) for e in examples)
    report.assistant_tokens = int(sum(int(e.mask.sum()) for e in examples))
    if quarantine_path is not None:
        write_jsonl(quarantine_path, bad)
        report.quarantine_path = str(quarantine_path)
    if empty_files:
        counts = ", ".join(f"{k}: {v}" for k, v in report.quarantined.items()) or "the file is empty"
        where = f"; see {quarantine_path}" if quarantine_path is not None and bad else ""
        raise OlmoflowError(f"{empty_files[0]}: no valid conversation ({counts}){where}")
    return examples, report
