"""The OLMo 3 ChatML chat template, once: as Jinja (for transformers / vLLM) and as pure Python.

Format (REFERENCE.md §4)::

    <|im_start|>{role}\\n{content}<|im_end|>\\n          one per message
    <|im_start|>assistant\\n                              add_generation_prompt=True

Tools: when ``tools`` is given, the first turn is a system turn (the caller's system message, or a
default one) followed by ``\\n<functions>\\n``, one JSON function spec per line, ``</functions>``.
An assistant's ``tool_calls`` are rendered as ``<function_calls>name(arg=json, ...)</function_calls>``,
one call per line, after its content. Tool results are ``tool`` (or ``environment``) messages and
render as an ``environment`` turn. An assistant's ``reasoning_content`` renders as
``<think>…</think>`` before its content.

:func:`apply_chat_template` is the implementation every olmoflow module uses (eval, serving,
``generate --chat``, SFT); the test suite checks it renders exactly what transformers renders from
:data:`CHAT_TEMPLATE`. Difference by design: the Python renderer also accepts tool-call
``arguments`` given as a JSON string (as the OpenAI API sends them) and renders them like the
decoded object; transformers templates expect a mapping (a string is rendered verbatim).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from olmoflow.errors import OlmoflowError
from olmoflow.tokenizer.special import (
    CALLS_END,
    CALLS_START,
    FUNCTIONS_END,
    FUNCTIONS_START,
    IM_END,
    IM_START,
)

#: System prompt used when ``tools`` are given but the conversation has no system message.
DEFAULT_TOOLS_SYSTEM = (
    "You are a helpful AI assistant with access to the functions listed below. To call functions, "
    "reply with one call per line, written as name(arg=value, ...), between function-call tags."
)
assert "'" not in DEFAULT_TOOLS_SYSTEM  # embedded in a Jinja single-quoted literal below

#: The Jinja chat template saved into tokenizer_config.json / chat_template.jinja.
#: ``{% generation %}`` marks assistant tokens for transformers' ``return_assistant_tokens_mask``.
CHAT_TEMPLATE = (
    """{#- olmoflow OLMo 3 ChatML template; mirrors olmoflow.tokenizer.chat.apply_chat_template -#}
{%- macro render_content(content) -%}
{%- if content is string -%}{{- content -}}
{%- elif content is iterable and content is not mapping -%}
{%- for part in content -%}{%- if part.type == 'text' -%}{{- part.text -}}{%- endif -%}{%- endfor -%}
{%- endif -%}
{%- endmacro -%}
{%- set ns = namespace(first=0) -%}
{%- if tools -%}
{%- if messages and messages[0].role == 'system' -%}
{%- set ns.first = 1 -%}
{{- '<|im_start|>system\\n' -}}{{- render_content(messages[0].content) -}}
{%- else -%}
{{- '<|im_start|>system\\n"""
    + DEFAULT_TOOLS_SYSTEM
    + """' -}}
{%- endif -%}
{{- '\\n<functions>\\n' -}}
{%- for tool in tools -%}
{{- (tool.function if tool.function is defined else tool) | tojson -}}{{- '\\n' -}}
{%- endfor -%}
{{- '</functions><|im_end|>\\n' -}}
{%- endif -%}
{%- for message in messages[ns.first:] -%}
{%- set role = 'environment' if message.role == 'tool' else message.role -%}
{{- '<|im_start|>' ~ role ~ '\\n' -}}
{%- if role == 'assistant' -%}
{%- generation -%}
{%- if message.reasoning_content is string -%}
{{- '<think>' ~ message.reasoning_content ~ '</think>' -}}
{%- endif -%}
{{- render_content(message.content) -}}
{%- if message.tool_calls -%}
{{- '<function_calls>' -}}
{%- for call in message.tool_calls -%}
{%- set fn = call.function if call.function is defined else call -%}
{{- fn.name ~ '(' -}}
{%- if fn.arguments is mapping -%}
{%- for key, value in fn.arguments.items() -%}
{{- key ~ '=' ~ (value | tojson) -}}{%- if not loop.last -%}{{- ', ' -}}{%- endif -%}
{%- endfor -%}
{%- elif fn.arguments is string -%}
{{- fn.arguments -}}
{%- endif -%}
{{- ')' -}}{%- if not loop.last -%}{{- '\\n' -}}{%- endif -%}
{%- endfor -%}
{{- '</function_calls>' -}}
{%- elif message.function_calls is string -%}
{{- '<function_calls>' ~ message.function_calls ~ '</function_calls>' -}}
{%- endif -%}
{{- '<|im_end|>' -}}
{%- endgeneration -%}
{{- '\\n' -}}
{%- else -%}
{{- render_content(message.content) -}}{{- '<|im_end|>\\n' -}}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{- '<|im_start|>assistant\\n' -}}
{%- endif -%}
"""
)

_REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")


def _content(content: Any) -> str:
    """A message's content as text: a string, or the text parts of an OpenAI content-part list."""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence) and not isinstance(content, (bytes, bytearray)):
        return "".join(
            str(p.get("text", "")) for p in content if isinstance(p, Mapping) and p.get("type") == "text"
        )
    return ""


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _arguments(args: Any) -> Any:
    """Tool-call arguments; a JSON string that holds an object is decoded (OpenAI sends strings)."""
    if isinstance(args, str):
        try:
            decoded = json.loads(args)
        except ValueError:
            return args
        return decoded if isinstance(decoded, Mapping) else args
    return args


def render_tool_calls(tool_calls: Sequence[Mapping[str, Any]]) -> str:
    """``<function_calls>name(a=1, b="x")\\n...</function_calls>`` for OpenAI-style tool calls."""
    lines = []
    for i, call in enumerate(tool_calls):
        fn = call.get("function", call) if isinstance(call, Mapping) else None
        if not isinstance(fn, Mapping):
            raise OlmoflowError(f"tool call {i}: expected a mapping with a 'name', got {call!r:.80}")
        args = _arguments(fn.get("arguments"))
        if isinstance(args, Mapping):
            inner = ", ".join(f"{key}={_dumps(value)}" for key, value in args.items())
        else:
            inner = args if isinstance(args, str) else ""
        lines.append(f"{fn.get('name', '')}({inner})")
    return CALLS_START + "\n".join(lines) + CALLS_END


def _role(message: Any, index: int) -> str:
    if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
        raise OlmoflowError(f"chat message {index}: expected a mapping with a string 'role', got {message!r:.80}")
    return "environment" if message["role"] == "tool" else message["role"]


def chat_segments(
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]] | None = None,
    add_generation_prompt: bool = False,
) -> list[tuple[str, bool]]:
    """Render a conversation as ``(text, is_assistant)`` pieces; joined they are the chat text.

    ``is_assistant`` marks what the model produces in an assistant turn (reasoning, content, tool
    calls and the closing ``<|im_end|>``): the tokens SFT trains on. These are exactly the spans
    transformers reports for the ``{% generation %}`` blocks of :data:`CHAT_TEMPLATE`.
    """
    if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Sequence):
        raise OlmoflowError(f"chat: expected a list of messages, got {type(messages).__name__}")
    if tools is not None:
        if isinstance(tools, (str, bytes, Mapping)) or not isinstance(tools, Sequence):
            raise OlmoflowError(f"chat: expected a list of tools, got {type(tools).__name__}")
        for i, tool in enumerate(tools):
            if not isinstance(tool, Mapping):
                raise OlmoflowError(f"chat tool {i}: expected a mapping (a function spec), got {tool!r:.80}")
    out: list[tuple[str, bool]] = []
    first = 0
    if tools:
        if messages and _role(messages[0], 0) == "system":
            system = _content(messages[0].get("content"))
            first = 1
        else:
            system = DEFAULT_TOOLS_SYSTEM
        specs = "".join(_dumps(t["function"] if "function" in t else t) + "\n" for t in tools)
        out.append((f"{IM_START}system\n{system}\n{FUNCTIONS_START}\n{specs}{FUNCTIONS_END}{IM_END}\n", False))
    for index, message in enumerate(messages[first:], start=first):
        role = _role(message, index)
        out.append((f"{IM_START}{role}\n", False))
        if role != "assistant":
            out.append((_content(message.get("content")) + f"{IM_END}\n", False))
            continue
        text = ""
        reasoning = next((message[k] for k in _REASONING_FIELDS if message.get(k) is not None), None)
        if isinstance(reasoning, str):
            text += f"<think>{reasoning}</think>"
        text += _content(message.get("content"))
        if message.get("tool_calls"):
            try:
                text += render_tool_calls(message["tool_calls"])
            except OlmoflowError as e:
                raise OlmoflowError(f"chat message {index}: {e}") from None
        elif isinstance(message.get("function_calls"), str):
            text += CALLS_START + message["function_calls"] + CALLS_END
        out.append((text + IM_END, True))
        out.append(("\n", False))
    if add_generation_prompt:
        out.append((f"{IM_START}assistant\n", False))
    return out


_CALL_HEAD = re.compile(r"\s*([A-Za-z_][\w.\-]*)\(")
_KEY = re.compile(r"\s*([A-Za-z_]\w*)\s*=\s*")
_SEP = re.compile(r"\s*,")
_END = re.compile(r"\s*\)\s*$")
_CALLS = re.compile(re.escape(CALLS_START) + r"(.*?)" + re.escape(CALLS_END), re.DOTALL)


def _parse_call(line: str) -> tuple[str, dict[str, Any]] | None:
    """``name(a=1, b="x")`` -> ("name", {"a": 1, "b": "x"}); None when the line is not a call."""
    head = _CALL_HEAD.match(line)
    if head is None:
        return None
    args: dict[str, Any] = {}
    pos, need_sep, decoder = head.end(), False, json.JSONDecoder()
    while True:
        if _END.match(line, pos):
            return head.group(1), args
        if need_sep:
            return None
        key = _KEY.match(line, pos)
        if key is None:
            return None
        try:
            args[key.group(1)], pos = decoder.raw_decode(line, key.end())
        except ValueError:
            return None
        sep = _SEP.match(line, pos)
        pos, need_sep = (sep.end(), False) if sep else (pos, True)


def parse_function_calls(text: str) -> tuple[str, list[dict[str, Any]]]:
    """Split model output into (content, OpenAI-style tool calls) — the inverse of the renderer.

    Every ``<function_calls>…</function_calls>`` block is removed from the content; each of its
    lines ``name(arg=json, ...)`` becomes ``{"type": "function", "function": {"name", "arguments"}}``
    with ``arguments`` a JSON string (as the OpenAI API returns it). A block with a line that does
    not parse is left in the content and yields no calls.
    """
    calls: list[dict[str, Any]] = []
    kept: list[str] = []
    last = 0
    for block in _CALLS.finditer(text):
        parsed = [_parse_call(line) for line in block.group(1).split("\n") if line.strip()]
        if any(p is None for p in parsed):
            continue
        kept.append(text[last : block.start()])
        last = block.end()
        for name, args in parsed:  # type: ignore[misc]
            calls.append({"type": "function", "function": {"name": name, "arguments": _dumps(args)}})
    kept.append(text[last:])
    return "".join(kept), calls


def apply_chat_template(
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]] | None = None,
    add_generation_prompt: bool = False,
) -> str:
    """Render a conversation (OpenAI-style message dicts) to the OLMo 3 ChatML prompt text."""
    return "".join(text for text, _ in chat_segments(messages, tools, add_generation_prompt))
