"""A new stage type is one file: the example in docs/flow.md, loaded as a flow plugin, runs with its
typed config, and REPORT.md and the release bundle use its report section and release files."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from olmoflow.config import ConfigError
from olmoflow.flow import load_flow, run_flow

from .conftest import REPO


def _example() -> str:
    doc = (REPO / "docs" / "flow.md").read_text()
    m = re.search(r"<!-- example: word_count.py -->\n```python\n(.*?)```", doc, re.S)
    assert m, "docs/flow.md lost its word_count.py example"
    return m.group(1)


@pytest.fixture
def plugin_flow(tmp_path):
    d = tmp_path / "flowdir"
    d.mkdir()
    (d / "word_count.py").write_text(_example())
    (d / "docs.jsonl").write_text("".join(json.dumps({"id": str(i), "text": t}) + "\n"
                                          for i, t in enumerate(["one two three", "four", "five six"])))

    def write(config: dict) -> str:
        flow = {"name": "wc", "plugins": ["word_count.py"],
                "stages": {"count": {"type": "word_count", "config": config, "inputs": {"docs": "docs.jsonl"}}}}
        (d / "wc.yaml").write_text(yaml.safe_dump(flow))
        return str(d / "wc.yaml")

    return write


def test_plugin_stage_type_runs_and_its_report_section_and_release_files_are_used(plugin_flow, tmp_path, cli):
    flow, wd, out = plugin_flow({"min_words": 2}), tmp_path / "w", tmp_path / "release"
    cli("run", flow, "--workdir", str(wd), "--quiet")  # a fresh process: the plugin is loaded from the flow
    report = (wd / "REPORT.md").read_text()
    assert "## Word counts\n\n| stage | docs | words |\n|---|---|---|\n| count | 2 | 5 |" in report
    cli("release", str(wd), "--out", str(out))  # another process: loads the plugin again from flow.json
    assert json.loads((out / "data" / "count" / "counts.json").read_text()) == {"docs": 2, "words": 5}
    assert "data/count/counts.json" in json.loads((out / "release.json").read_text())["files"]
    manifest = json.loads((out / "manifests" / "count.manifest.json").read_text())
    assert manifest["config"] == {"min_words": 2} and set(manifest["versions"]) == {"olmoflow"}


def test_plugin_stage_config_is_typed_with_did_you_mean(plugin_flow, tmp_path):
    with pytest.raises(ConfigError, match=r"stages\.count\.config: .*key 'min_wrods': unknown key "
                                          r"\(did you mean 'min_words'\?\)"):
        run_flow(load_flow(plugin_flow({"min_wrods": 2})), tmp_path / "w", quiet=True)
    with pytest.raises(ConfigError, match=r"key 'min_words': Input should be greater than or equal to 0"):
        run_flow(load_flow(plugin_flow({"min_words": -1})), tmp_path / "w", quiet=True)
