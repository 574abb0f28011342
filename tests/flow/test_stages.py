"""Built-in stage wrappers: they hand the wrapped package every input document and the config meant."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from olmoflow.flow.registry import StageContext, get_stage_type


def _ctx(tmp_path: Path, stage: str) -> StageContext:
    return StageContext(stage=stage, seed=0, workdir=tmp_path, quiet=True)


def _docs(n: int, source: str) -> str:
    return "".join(json.dumps({"id": f"{source}-{i}", "text": f"document {i} of {source} " * 3, "source": source})
                   + "\n" for i in range(n))


def test_curate_stage_reads_every_document_file_of_a_directory(tmp_path):
    """A Dolma-layout directory: .json.gz shards, nested source dirs and .jsonl all count."""
    src = tmp_path / "raw"
    (src / "books").mkdir(parents=True)
    with gzip.open(src / "web-0000.json.gz", "wt") as f:
        f.write(_docs(3, "web"))
    (src / "books" / "b.jsonl").write_text(_docs(2, "books"))
    (src / "c.jsonl").write_text(_docs(1, "c"))
    st = get_stage_type("curate")
    config = st.resolve_config({"recipe": {"steps": [{"step": "normalize"}]}, "workers": 1})
    out = tmp_path / "out"
    out.mkdir()
    metrics = st.fn(st.typed_config(config), {"docs": src}, out, _ctx(tmp_path, "curate"))
    assert metrics["docs_in"] == 6 and metrics["docs_kept"] == 6


def test_curate_stage_on_a_curate_output_reads_only_its_kept_documents(tmp_path):
    """Chaining curate stages: the input artifact's removed/ and reports are not documents."""
    src = tmp_path / "raw.jsonl"
    src.write_text(_docs(4, "web"))
    st = get_stage_type("curate")
    config = st.resolve_config({"recipe": {"steps": [{"step": "normalize"}]}, "workers": 1})
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    st.fn(st.typed_config(config), {"docs": src}, first, _ctx(tmp_path, "curate"))
    (first / "manifest.json").write_text(json.dumps({"id": "x"}))  # what the runner adds
    metrics = st.fn(st.typed_config(config), {"docs": first}, second, _ctx(tmp_path, "curate2"))
    assert metrics["docs_in"] == 4 and metrics["docs_kept"] == 4


@pytest.mark.parametrize("value, expected", [(None, ""), ("", ""), ("def ", "def ")])
def test_export_sample_prompt_null_means_no_sample(value, expected):
    """`sample_prompt:` left empty in YAML (null) skips the sample, like "" (not the prompt 'None')."""
    assert get_stage_type("export").resolve_config({"sample_prompt": value})["sample_prompt"] == expected


def test_pretrain_trains_with_the_seed_its_resolved_config_records(tmp_path):
    """The flow seed by default; a `seed` in the stage config is the one trained with (not silently
    replaced by the flow seed while the manifest's config says otherwise)."""
    from olmoflow.flow.stages.pretrain import train_config

    st = get_stage_type("pretrain")
    base = {"model": "tiny-1m", "seq_len": 128, "steps": 2}
    ctx = StageContext(stage="pretrain", seed=7, workdir=tmp_path, quiet=True)
    cfg = st.resolve_config(base)
    assert "seed" not in cfg and train_config(st.typed_config(cfg), {"data": tmp_path}, tmp_path / "o", ctx).seed == 7
    cfg = st.resolve_config({**base, "seed": 5})
    assert cfg["seed"] == 5 and train_config(st.typed_config(cfg), {"data": tmp_path}, tmp_path / "o", ctx).seed == 5


def test_pretrain_takes_vocab_eos_pad_from_the_tokenizer_input(tmp_path):
    from olmoflow.flow.stages.pretrain import train_config
    from olmoflow.tokenizer import Tok, train_tokenizer

    docs = tmp_path / "d.jsonl"
    docs.write_text(_docs(20, "web"))
    train_tokenizer([docs], tmp_path / "tok", vocab_size=300, quiet=True)
    tok = Tok.from_dir(tmp_path / "tok")
    st = get_stage_type("pretrain")
    ctx = StageContext(stage="pretrain", seed=0, workdir=tmp_path, quiet=True)
    cfg = train_config(st.typed_config(st.resolve_config({"model": "tiny-1m", "seq_len": 128, "steps": 2})),
                       {"data": tmp_path, "tokenizer": tmp_path / "tok"}, tmp_path / "o", ctx)
    assert cfg.model_overrides["vocab_size"] == tok.vocab_size
    assert cfg.model_overrides["eos_token_id"] == tok.eos_id
    assert cfg.model_overrides["pad_token_id"] == tok.pad_id
