"""Review tests: a manifest records what is needed to reproduce its artifact."""

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
