"""A manifest records what is needed to reproduce its artifact, and its cache key the versions that shape it."""

from __future__ import annotations

from importlib import metadata

from olmoflow.flow import load_flow, run_flow
from olmoflow.flow.store import read_manifest


def test_manifest_records_versions_of_the_libraries_that_shape_outputs(flow_file, tmp_path):
    """The BPE merges (tokenizers), token shards and weights (numpy, safetensors) and curation
    decisions (lingua, rensa, ...) depend on library versions: the manifest names them, not just
    python / torch / transformers."""
    res = run_flow(load_flow(flow_file(), []), tmp_path / "w", quiet=True)
    env = read_manifest(res.stages["vocab"].artifact_dir)["environment"]
    for pkg in ("numpy", "tokenizers", "safetensors", "lingua-language-detector", "rensa"):
        assert env[pkg] == metadata.version(pkg)
    assert env["torch"] == metadata.version("torch") and env["python"]


def test_an_upgrade_of_olmoflow_or_an_output_library_reruns_stages_instead_of_reusing_them(flow_file, tmp_path,
                                                                                          monkeypatch):
    """The cache key holds the versions the stage type names (toy types: all output libraries) and
    olmoflow's: after an upgrade every stage runs again, and its manifest records the new versions."""
    import olmoflow
    from olmoflow.flow import env

    flow, wd = flow_file(), tmp_path / "w"
    first = run_flow(load_flow(flow), wd, quiet=True)
    assert read_manifest(first.stages["vocab"].artifact_dir)["versions"]["numpy"] == metadata.version("numpy")
    assert run_flow(load_flow(flow), wd, quiet=True).executed == []

    real = env._version
    monkeypatch.setattr(env, "_version", lambda pkg: "999.0" if pkg == "numpy" else real(pkg))
    upgraded = run_flow(load_flow(flow), wd, quiet=True)
    assert upgraded.executed == first.order
    assert all(upgraded.stages[n].key != first.stages[n].key for n in first.order)
    assert read_manifest(upgraded.stages["vocab"].artifact_dir)["versions"]["numpy"] == "999.0"

    monkeypatch.setattr(olmoflow, "__version__", "999.0.0")
    assert run_flow(load_flow(flow), wd, quiet=True).executed == first.order


def test_a_stage_type_is_keyed_only_on_the_libraries_it_names(monkeypatch):
    """A tokenizer upgrade reruns the tokenizer stage, not pretraining (which does not use it)."""
    from olmoflow.flow import env
    from olmoflow.flow.registry import get_stage_type

    before = {t: env.library_versions(get_stage_type(t).libraries) for t in ("tokenizer", "pretrain")}
    real = env._version
    monkeypatch.setattr(env, "_version", lambda pkg: "0.0-new" if pkg == "tokenizers" else real(pkg))
    after = {t: env.library_versions(get_stage_type(t).libraries) for t in ("tokenizer", "pretrain")}
    assert after["tokenizer"] != before["tokenizer"] and after["pretrain"] == before["pretrain"]
