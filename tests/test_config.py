"""Typed configs from YAML: dotted overrides mean what the user typed; bad files are one-line errors."""

from __future__ import annotations

import os
import re

import pytest

from olmoflow.config import Config, ConfigError, load_config, parse_overrides, read_yaml


def _value(item: str):
    [(_, value)] = parse_overrides([item])
    return value


@pytest.mark.parametrize("item, expected", [
    ("a.b=1", 1), ("lr=3e-4", 3e-4), ("x=[1,2]", [1, 2]), ("x={k: v}", {"k": "v"}), ("x=null", None),
    ("x=true", True), ("url=http://host:8080/a", "http://host:8080/a"), ("s=a=b", "a=b"), ('q="1"', "1"),
    ("q='a: b'", "a: b"), ("x=", ""),
])
def test_override_values_parse_as_yaml_scalars_and_flow_collections(item, expected):
    assert _value(item) == expected


@pytest.mark.parametrize("item, expected", [
    ("prompt=Q: what is 2+3?", "Q: what is 2+3?"),  # not the mapping {'Q': 'what is 2+3?'}
    ("prompt=- item", "- item"),  # not the list ['item']
    ("tag=v1 #rc", "v1 #rc"),  # not cut at a YAML comment
    ("tag=#1", "#1"),  # not None
    ("time=1:30", "1:30"),  # not YAML 1.1's base-60 integer 90
])
def test_override_values_that_are_not_flow_yaml_stay_the_string_typed(item, expected):
    """A command-line value with ': ', '- ', ' #' or a base-60 look is text, as the user typed it."""
    assert _value(item) == expected


class _Sample(Config):
    prompt: str = "def "
    n: int = 1


def test_override_with_colon_space_reaches_a_string_field(tmp_path):
    assert load_config(_Sample, None, ["prompt=Q: 2+3="]).prompt == "Q: 2+3="


def test_duplicate_key_in_yaml_is_an_error_naming_file_line_and_key(tmp_path):
    """YAML would silently keep the last value: a copy-pasted key would override the first."""
    f = tmp_path / "c.yaml"
    f.write_text("prompt: a\nn: 1\nn: 2\n")
    with pytest.raises(ConfigError, match=re.escape(f"{f}:3: n: duplicate key (first at line 2)")):
        load_config(_Sample, f)
    f.write_text("outer:\n  x: 1\n  x: 2\n")
    with pytest.raises(ConfigError, match=re.escape(f"{f}:3: outer.x: duplicate key (first at line 2)")):
        read_yaml(f)
    f.write_text("base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n")  # merge keys and aliases still work
    assert read_yaml(f)["other"] == {"x": 1, "y": 2}


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("a: 1\nb:\n\t- 2\n")
    with pytest.raises(ConfigError, match=re.escape(f"{f}:3: invalid YAML")):
        read_yaml(f)


def test_non_utf8_yaml_is_a_config_error_naming_the_file(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_bytes(b"a: 1\nprompt: caf\xe9\n")
    with pytest.raises(ConfigError, match=re.escape(f"{f}:2: not UTF-8")):
        read_yaml(f)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_unreadable_yaml_is_a_config_error_naming_the_file(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("a: 1\n")
    f.chmod(0)
    with pytest.raises(ConfigError, match=re.escape(f"{f}: cannot read")):
        read_yaml(f)


class _Optim(Config):
    lr: float = 1e-3
    warmup_steps: int = 0


class _Train(Config):
    optimizer: _Optim = _Optim()
    steps: int = 1


@pytest.mark.parametrize("override, match", [
    ("optim.lr=1", r"key 'optim': unknown key \(did you mean 'optimizer'\?\)"),
    ("optimizer.warmup=3", r"key 'optimizer\.warmup': unknown key \(did you mean 'warmup_steps'\?\)"),
    ("zzz=1", r"key 'zzz': unknown key \(allowed: optimizer, steps\)"),
])
def test_unknown_key_names_the_key_and_the_close_match(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(_Train, None, [override])
