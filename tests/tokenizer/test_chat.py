"""The chat template: pinned format, and our Python renderer == transformers running the Jinja template."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from olmoflow.errors import OlmoflowError
from olmoflow.tokenizer import (
    CHAT_TEMPLATE,
    DEFAULT_TOOLS_SYSTEM,
    Tok,
    apply_chat_template,
    chat_segments,
    parse_function_calls,
)

transformers = pytest.importorskip("transformers")

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
SEARCH_TOOL = {"name": "search", "description": "Web search (ünïcode ok)", "parameters": {"type": "object"}}

PLAIN = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Hi!"},
    {"role": "assistant", "content": "Hello."},
    {"role": "user", "content": "  spaces \r\n and 😀  "},
]
TOOL_CHAT = [
    {"role": "user", "content": "Weather in Paris and Tōkyō?"},
    {
        "role": "assistant",
        "content": "Checking.",
        "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
            {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Tōkyō", "days": [1, 2]}}},
        ],
    },
    {"role": "tool", "content": '{"temp": 21}'},
    {"role": "environment", "content": '{"temp": 9}'},
    {"role": "assistant", "content": "Paris 21°C, Tōkyō 9°C."},
]
CASES = {
    "plain": (PLAIN, None),
    "no_system": (PLAIN[1:], None),
    "tools_default_system": (TOOL_CHAT, [WEATHER_TOOL, SEARCH_TOOL]),
    "tools_own_system": ([{"role": "system", "content": "Use tools."}] + TOOL_CHAT, [WEATHER_TOOL]),
    "tool_call_no_content": (
        [{"role": "user", "content": "q"},
         {"role": "assistant", "content": None, "tool_calls": [{"name": "search", "arguments": {"q": "olmo"}}]},
         {"role": "tool", "content": "result"}],
        [SEARCH_TOOL],
    ),
    "content_parts_and_reasoning": (
        [{"role": "user", "content": [{"type": "text", "text": "part 1, "}, {"type": "text", "text": "part 2"}]},
         {"role": "assistant", "reasoning_content": "think hard", "content": "answer"},
         {"role": "assistant", "content": "", "function_calls": 'search(q="x")'}],
        None,
    ),
}


@pytest.fixture(scope="module")
def hf_tok(tok_dir):
    return transformers.AutoTokenizer.from_pretrained(str(tok_dir))


def test_plain_chat_format_is_chatml():
    assert apply_chat_template(PLAIN[:3], add_generation_prompt=True) == (
        "<|im_start|>system\nYou are terse.<|im_end|>\n"
        "<|im_start|>user\nHi!<|im_end|>\n"
        "<|im_start|>assistant\nHello.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_tools_format():
    text = apply_chat_template(TOOL_CHAT[:3], tools=[WEATHER_TOOL])
    spec = json.dumps(WEATHER_TOOL["function"], ensure_ascii=False)
    assert text == (
        f"<|im_start|>system\n{DEFAULT_TOOLS_SYSTEM}\n<functions>\n{spec}\n</functions><|im_end|>\n"
        "<|im_start|>user\nWeather in Paris and Tōkyō?<|im_end|>\n"
        "<|im_start|>assistant\nChecking.<function_calls>get_weather(city=\"Paris\")\n"
        "get_weather(city=\"Tōkyō\", days=[1, 2])</function_calls><|im_end|>\n"
        '<|im_start|>environment\n{"temp": 21}<|im_end|>\n'
    )


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("gen", [False, True])
def test_python_renderer_equals_transformers(hf_tok, name, gen):
    messages, tools = CASES[name]
    ours = apply_chat_template(messages, tools=tools, add_generation_prompt=gen)
    theirs = hf_tok.apply_chat_template(messages, tools=tools, add_generation_prompt=gen, tokenize=False)
    assert ours == theirs


def test_saved_template_is_ours(tok_dir, hf_tok):
    assert hf_tok.chat_template == CHAT_TEMPLATE
    assert json.loads((tok_dir / "tokenizer_config.json").read_text())["chat_template"] == CHAT_TEMPLATE


_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
_args = st.dictionaries(st.text("abcxyz_", min_size=1, max_size=5),
                        st.one_of(st.integers(), _text, st.booleans(), st.none(), st.lists(st.integers(), max_size=3)),
                        max_size=3)
_call = st.builds(lambda n, a: {"type": "function", "function": {"name": n, "arguments": a}},
                  st.text("abcdef_", min_size=1, max_size=8), _args)
_message = st.one_of(
    st.builds(lambda r, c: {"role": r, "content": c}, st.sampled_from(["system", "user", "tool", "environment"]), _text),
    st.builds(lambda c, calls: {"role": "assistant", "content": c, "tool_calls": calls},
              st.one_of(_text, st.none()), st.lists(_call, max_size=2)),
)
_tool = st.builds(lambda n, d: {"type": "function", "function": {"name": n, "description": d}},
                  st.text("abc", min_size=1, max_size=4), _text)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_message, min_size=1, max_size=6), st.one_of(st.none(), st.lists(_tool, min_size=1, max_size=2)), st.booleans())
def test_random_conversations_render_like_transformers(hf_tok, messages, tools, gen):
    ours = apply_chat_template(messages, tools=tools, add_generation_prompt=gen)
    assert ours == hf_tok.apply_chat_template(messages, tools=tools, add_generation_prompt=gen, tokenize=False)


def test_assistant_spans_match_transformers_generation_mask(hf_tok, tok_dir):
    messages, tools = CASES["tools_own_system"]
    out = hf_tok.apply_chat_template(messages, tools=tools, tokenize=True, return_dict=True,
                                     return_assistant_tokens_mask=True)
    theirs = hf_tok.decode([i for i, m in zip(out["input_ids"], out["assistant_masks"]) if m])
    assert theirs == "".join(t for t, is_assistant in chat_segments(messages, tools) if is_assistant)
    ids, mask = Tok.from_dir(tok_dir).encode_chat_with_mask(messages, tools)
    assert hf_tok.decode(ids) == apply_chat_template(messages, tools)
    assert hf_tok.decode([i for i, m in zip(ids, mask) if m]) == theirs


def test_json_string_arguments_render_like_objects():
    as_obj = [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1, "b": "ü"}}}]}]
    as_str = [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": '{"a": 1, "b": "ü"}'}}]}]
    assert apply_chat_template(as_str) == apply_chat_template(as_obj)
    assert '<function_calls>f(a=1, b="ü")</function_calls>' in apply_chat_template(as_obj)


def test_chat_ids_use_single_special_tokens(tok_dir):
    tok = Tok.from_dir(tok_dir)
    ids = tok.encode_chat(PLAIN, add_generation_prompt=True)
    assert ids.count(tok.token_id("<|im_start|>")) == 5 and ids.count(tok.token_id("<|im_end|>")) == 4
    assert tok.decode(ids) == apply_chat_template(PLAIN, add_generation_prompt=True)


def test_bad_message_is_one_line_error():
    with pytest.raises(OlmoflowError, match="chat message 1"):
        apply_chat_template([{"role": "user", "content": "x"}, {"content": "no role"}])


_ident = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=100, deadline=None)
@given(_text, st.lists(st.builds(lambda n, a: {"type": "function", "function": {"name": n, "arguments": a}},
                                 _ident, st.dictionaries(_ident, _json, max_size=3)), min_size=1, max_size=3))
def test_parse_function_calls_inverts_rendering(content, calls):
    """What the template renders for tool calls parses back to the same calls (serving relies on it)."""
    text = apply_chat_template([{"role": "assistant", "content": content, "tool_calls": calls}])
    body = text[len("<|im_start|>assistant\n"): -len("<|im_end|>\n")]
    parsed_content, parsed = parse_function_calls(body)
    assert parsed_content == content
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in parsed] == [
        (c["function"]["name"], c["function"]["arguments"]) for c in calls
    ]


def test_parse_function_calls_leaves_malformed_blocks():
    text = "a<function_calls>f(x=1 y=2)</function_calls>b"
    assert parse_function_calls(text) == (text, [])
    assert parse_function_calls("no calls") == ("no calls", [])
