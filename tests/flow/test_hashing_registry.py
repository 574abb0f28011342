"""Content hashes ignore what must not matter (paths, volatile keys); stage configs fail early."""

from __future__ import annotations

import json

import pytest

from olmoflow.config import ConfigError
from olmoflow.flow.hashing import hash_path, hash_tree
from olmoflow.flow.registry import STAGES, get_stage_type


def _tree(root, files: dict[str, str]):
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_tree_hash_normalizes_paths_and_drops_volatile_keys(tmp_path):
    a = _tree(tmp_path / "wa" / "art", {"meta.json": json.dumps({"tok": str(tmp_path / "wa" / "x"), "n": 3}),
                                        "m.jsonl": '{"step": 1, "loss": 2.0, "tokens_per_s": 10}\n',
                                        "timing.json": "1"})
    b = _tree(tmp_path / "wb" / "art", {"meta.json": json.dumps({"tok": str(tmp_path / "wb" / "x"), "n": 3}),
                                        "m.jsonl": '{"step": 1, "loss": 2.0, "tokens_per_s": 99}\n',
                                        "timing.json": "2"})
    kw = dict(exclude=("timing.json",), volatile_keys={"m.jsonl": ("tokens_per_s",)})
    ha = hash_tree(a, normalize={str(tmp_path / "wa"): "${WORKDIR}"}, **kw)[0]
    hb = hash_tree(b, normalize={str(tmp_path / "wb"): "${WORKDIR}"}, **kw)[0]
    assert ha == hb
    # a real change is still a change
    (b / "m.jsonl").write_text('{"step": 1, "loss": 2.5, "tokens_per_s": 99}\n')
    assert hash_tree(b, normalize={str(tmp_path / "wb"): "${WORKDIR}"}, **kw)[0] != ha
    # without normalization the recorded path matters
    assert hash_tree(a, **kw)[0] != hash_tree(_tree(tmp_path / "wc", {}), **kw)[0]


def test_hash_path_of_file_and_directory(tmp_path):
    f = tmp_path / "f.txt"
    f.write_text("abc")
    assert hash_path(f) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # sha256("abc")
    d = _tree(tmp_path / "d", {"a.txt": "1", "sub/b.txt": "2"})
    h = hash_path(d)
    (d / "sub" / "b.txt").write_text("3")
    assert hash_path(d) != h


def test_builtin_stage_types_are_registered_and_planned_ones_marked():
    get_stage_type("pretrain")
    for name in ("demo_corpus", "curate", "tokenizer", "tokenize", "mix", "pretrain", "evaluate", "export"):
        assert name in STAGES and not STAGES[name].planned and STAGES[name].config_class() is not None
    # every implemented stage type is typed; the planned ones only plan
    assert all(st.config_class() is not None for st in STAGES.values() if not st.planned)
    for name in ("midtrain", "long_context", "soup", "microanneal", "long_docs"):
        assert name in STAGES and not STAGES[name].planned
    assert STAGES["pretrain"].fork_input == "init_from"


@pytest.mark.parametrize("stage, config, match", [
    ("pretrain", {"steps": 1, "run_dir": "x"}, "set by the runner"),
    ("pretrain", {"steps": 1, "data": {"paths": ["x"]}}, "give token datasets as inputs"),
    ("pretrain", {"steps": 1, "optimizer": {"lr": -1}}, "optimizer.lr"),
    ("pretrain", {}, "exactly one of 'steps' or 'tokens'"),
    ("tokenizer", {}, "vocab_size"),
    ("mix", {"ratios": {"a": 1}}, "total_tokens"),
    ("evaluate", {"tasks": []}, "tasks"),
    ("export", {"dtype": "int8"}, "dtype"),
    ("curate", {"recipe": "some/file.yaml"}, "inline"),
    ("tokenize", {"wokers": 2}, "unknown key"),
])
def test_stage_configs_are_validated_before_running(stage, config, match):
    with pytest.raises(ConfigError, match=match):
        get_stage_type(stage).resolve_config(config)


def test_pretrain_resolved_config_has_defaults_and_no_paths():
    cfg = get_stage_type("pretrain").resolve_config({"steps": 10, "model": "tiny-1m"})
    assert cfg["optimizer"]["lr"] == 3e-4 and cfg["optimizer"]["betas"] == [0.9, 0.95]
    assert "run_dir" not in cfg and "init_from" not in cfg and "paths" not in cfg["data"]


def test_hash_cache_reuses_unchanged_inputs_and_notices_changes(tmp_path):
    d = _tree(tmp_path / "corpus", {"a.jsonl": "1\n", "b.jsonl": "2\n"})
    cache: dict = {}
    h = hash_path(d, cache)
    assert h == hash_path(d) and str(d.resolve()) in cache
    cache[str(d.resolve())]["sha256"] = "stale-but-trusted"  # unchanged stats: the cached value is used
    assert hash_path(d, cache) == "stale-but-trusted"
    (d / "b.jsonl").write_text("22\n")  # size changes -> rehash
    assert hash_path(d, cache) == hash_path(d) != h


def test_registering_stage_types_imports_no_stage_package():
    """A flow that uses no real stage must not need torch or any stage package's extras."""
    import subprocess
    import sys

    code = ("import sys, olmoflow.flow.stages, olmoflow.flow.runner; "
            "bad = [m for m in ('torch', 'olmoflow.data', 'olmoflow.train', 'olmoflow.eval', 'olmoflow.model', "
            "'olmoflow.tokenizer', 'transformers') if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
