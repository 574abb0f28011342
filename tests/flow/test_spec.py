"""Flow files: references, overrides, ordering, and one-line errors that name the key."""

from __future__ import annotations

import re

import pytest

from olmoflow.config import ConfigError
from olmoflow.flow.spec import parse_flow, toposort


def _flow(stages: dict, **top) -> dict:
    return {"name": "t", "stages": stages, **top}


def test_references_in_both_forms_and_external_paths(tmp_path):
    spec = parse_flow(_flow({
        "b": {"type": "x", "inputs": {"a1": "${stages.a}", "a2": {"stage": "a", "path": "sub/dir"},
                                      "raw": "data/raw.jsonl", "remote": "hf://org/ds"}},
        "a": {"type": "x"},
    }), base_dir=tmp_path)
    b = spec.stages["b"]
    assert b.inputs["a1"].stage == "a" and b.inputs["a1"].subpath == ""
    assert b.inputs["a2"].stage == "a" and b.inputs["a2"].subpath == "sub/dir"
    assert b.inputs["raw"].path == "data/raw.jsonl" and not b.inputs["raw"].is_uri
    assert b.inputs["remote"].is_uri
    assert parse_flow(_flow({"c": {"type": "x", "inputs": {"i": "${stages.a}/ck/step-2"}}, "a": {"type": "x"}}),
                      base_dir=tmp_path).stages["c"].inputs["i"].subpath == "ck/step-2"
    assert toposort(spec) == ["a", "b"]  # dependency order, not file order


def test_toposort_keeps_file_order_among_independent_stages(tmp_path):
    spec = parse_flow(_flow({n: {"type": "x"} for n in ["z", "m", "a"]}), base_dir=tmp_path)
    assert toposort(spec) == ["z", "m", "a"]


def test_cycle_is_reported_with_the_cycle(tmp_path):
    with pytest.raises(ConfigError, match=r"stages form a cycle: (a -> b -> c -> a|b -> c -> a -> b|c -> a -> b -> c)"):
        parse_flow(_flow({
            "a": {"type": "x", "inputs": {"i": "${stages.c}"}},
            "b": {"type": "x", "inputs": {"i": "${stages.a}"}},
            "c": {"type": "x", "inputs": {"i": "${stages.b}"}},
            "d": {"type": "x"},
        }), base_dir=tmp_path)


@pytest.mark.parametrize("flow, match", [
    (_flow({"a": {"type": "x", "inputs": {"i": "${stages.nope}"}}}), r"stages\.a\.inputs\.i: unknown stage 'nope'"),
    (_flow({"a": {"type": "x", "confg": {}}}), r"stages\.a: unknown key\(s\) \['confg'\]"),
    (_flow({"a": {"config": {}}}), r"stages\.a\.type: required"),
    (_flow({"a": {"type": "x"}}, sed=1), r"unknown top-level key\(s\) \['sed'\]"),
    (_flow({"a": {"type": "x"}}, seed="one"), r"key 'seed': expected an integer"),
    (_flow({"a": {"type": "x", "inputs": {"i": "${stage.a}"}}}), r"cannot parse reference"),
    ({"name": "t"}, r"'stages' must be a non-empty mapping"),
])
def test_bad_flow_files_fail_with_the_key_path(tmp_path, flow, match):
    with pytest.raises(ConfigError, match=match):
        parse_flow(flow, source="f.yaml", base_dir=tmp_path)


def test_overrides_reach_stage_config_inputs_and_seed(tmp_path):
    flow = _flow({"a": {"type": "x", "config": {"opt": {"lr": 1}}}, "b": {"type": "x"}})
    spec = parse_flow(flow, base_dir=tmp_path, overrides=[
        "a.opt.lr=3.0e-4", "a.steps=10", "b.inputs.data=${stages.a}", "seed=5", "a.tags=[x, y]"])
    assert spec.stages["a"].config == {"opt": {"lr": 3e-4}, "steps": 10, "tags": ["x", "y"]}
    assert spec.stages["b"].inputs["data"].stage == "a"
    assert spec.seed == 5
    assert flow["stages"]["a"]["config"] == {"opt": {"lr": 1}}  # the original mapping is untouched
    with pytest.raises(ConfigError, match="no stage 'c'"):
        parse_flow(flow, base_dir=tmp_path, overrides=["c.x=1"])
    with pytest.raises(ConfigError, match="not of the form"):
        parse_flow(flow, base_dir=tmp_path, overrides=["a.x"])


def test_yaml_errors_name_file_and_line(tmp_path, cli):
    bad = tmp_path / "bad.yaml"
    bad.write_text("stages:\n  a: {type: x\n")
    p = cli("run", str(bad), "--workdir", str(tmp_path / "w"), check=False)
    assert p.returncode == 1 and f"{bad}:" in p.stderr and "invalid YAML" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_duplicate_stage_name_is_an_error_naming_file_line_and_key(tmp_path, cli):
    """YAML silently keeps the last of two equal keys: a copy-pasted stage would vanish from the flow."""
    from olmoflow.flow.spec import load_flow

    f = tmp_path / "dup.yaml"
    f.write_text("name: t\nstages:\n  a: {type: x}\n  b: {type: x, inputs: {i: '${stages.a}'}}\n"
                 "  a:\n    type: x\n    config: {n: 1, n: 2}\n")
    with pytest.raises(ConfigError, match=re.escape(f"{f}:5: ") + r"stages\.a: duplicate key \(first at line 3\)"):
        load_flow(f)
    f.write_text("stages:\n  a:\n    type: x\n    config: {n: 1, n: 2}\n")
    with pytest.raises(ConfigError, match=re.escape(f"{f}:4: ") + r"stages\.a\.config\.n: duplicate key \(first at line 4\)"):
        load_flow(f)
    p = cli("run", str(f), "--dry-run", "--workdir", str(tmp_path / "w"), check=False)
    assert p.returncode == 1 and "duplicate key" in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_stage_type_of_wrong_kind_says_so(tmp_path):
    with pytest.raises(ConfigError, match=r"stages\.a\.type: expected a stage type name \(a string\), got 5"):
        parse_flow(_flow({"a": {"type": 5}}), source="f.yaml", base_dir=tmp_path)


@pytest.mark.parametrize("body, match", [
    ("demo_corpus", r"f\.yaml: stages\.a: expected a mapping"),
    ({"type": "x", "config": [1]}, r"f\.yaml: stages\.a\.config: expected a mapping"),
])
def test_override_of_a_malformed_stage_names_the_key_instead_of_crashing(tmp_path, body, match):
    for override in ("a.x=1", "a.inputs.i=${stages.b}"):
        with pytest.raises(ConfigError, match=match):
            parse_flow(_flow({"a": body, "b": {"type": "x"}}), source="f.yaml", base_dir=tmp_path,
                       overrides=[override])


def test_a_variant_applies_its_overrides_before_the_command_lines(tmp_path):
    data = _flow({"a": {"type": "x", "config": {"steps": 100, "lr": 1.0}}},
                 variants={"quick": ["a.steps=3", "a.lr=0.5"]})
    assert parse_flow(data, base_dir=tmp_path).stages["a"].config == {"steps": 100, "lr": 1.0}
    quick = parse_flow(data, base_dir=tmp_path, variant="quick", overrides=["a.lr=2.0"])
    assert quick.stages["a"].config == {"steps": 3, "lr": 2.0} and quick.variant == "quick"
    with pytest.raises(ConfigError, match=r"no variant 'fast' \(variants: quick\)"):
        parse_flow(data, base_dir=tmp_path, variant="fast")
    with pytest.raises(ConfigError, match="key 'variants'"):
        parse_flow(_flow({"a": {"type": "x"}}, variants={"quick": "a.steps=3"}), base_dir=tmp_path)


def test_an_override_of_a_stage_sharing_a_yaml_anchor_changes_only_that_stage(tmp_path):
    f = tmp_path / "f.yaml"
    f.write_text("stages:\n  a: {type: x, config: &c {limit: 100}}\n  b: {type: x, config: *c}\n")
    from olmoflow.flow.spec import load_flow

    spec = load_flow(f, ["a.limit=3"])
    assert spec.stages["a"].config == {"limit": 3} and spec.stages["b"].config == {"limit": 100}


def test_tiny_flow_quick_variant_names_only_its_stages():
    from olmoflow.flow.cli import tiny_flow_path
    from olmoflow.flow.spec import load_flow

    assert load_flow(tiny_flow_path(), variant="quick").stages["pretrain"].config["steps"] < 50
