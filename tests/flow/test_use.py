"""From a flow's run to using its models, through the real CLI: every checkpoint a flow writes loads in
generate / eval / chat without --tokenizer, artifacts are addressable by id and id prefix, ``run --force``
reruns a stage and its dependents, a missing optional piece is named and enters the cache key, the
demo ends with the final model and what to do with it, a too-long prompt is refused or left-truncated,
and tables printed to a pipe are not cut at 80 columns."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

#: the smallest real flow that writes a model with intermediate checkpoints (~5 s on 2 cores)
MINI = {
    "name": "mini",
    "seed": 0,
    "stages": {
        "corpus": {"type": "demo_corpus",
                   "config": {"max_docs_per_source": 20, "n_math": 60, "n_math_eval": 10, "heldout_per_source": 2}},
        "tokenizer": {"type": "tokenizer", "config": {"vocab_size": 512, "split_digits": True},
                      "inputs": {"docs": "${stages.corpus}/docs"}},
        "tokenize": {"type": "tokenize",
                     "inputs": {"docs": "${stages.corpus}/docs", "tokenizer": "${stages.tokenizer}"}},
        "pretrain": {"type": "pretrain",
                     "config": {"model": "tiny-1m", "seq_len": 64, "micro_batch": 4, "global_batch_tokens": 256,
                                "steps": 4, "checkpoint": {"every": 2}},
                     "inputs": {"data": "${stages.tokenize}", "tokenizer": "${stages.tokenizer}"}},
        "evaluate": {"type": "evaluate",
                     "config": {"tasks": ["arith_rc:{inputs.math_eval}"], "optional_tasks": ["OPTIONAL"],
                                "limit": 4, "sweep": False},
                     "inputs": {"model": "${stages.pretrain}", "tokenizer": "${stages.tokenizer}",
                                "math_eval": "${stages.corpus}/eval/math_eval.jsonl"}},
    },
}


REPO = Path(__file__).resolve().parents[2]


def olmoflow(*args: str, cwd: Path | None = None, input: str | None = None, check: bool = True):
    """The real ``olmoflow`` CLI in a subprocess (stdout/stderr are pipes, not a terminal)."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1")
    env.pop("COLUMNS", None)
    p = subprocess.run([sys.executable, "-m", "olmoflow.cli", *args], capture_output=True, text=True, cwd=cwd,
                       env=env, input=input, timeout=300)
    if check and p.returncode != 0:
        raise AssertionError(f"olmoflow {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


@pytest.fixture
def cli():
    return olmoflow


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    """One run of the mini flow: {"root", "flow", "workdir", "state", "first" (the run's output)}.
    Its evaluate stage has an optional task whose data file does not exist yet."""
    root = tmp_path_factory.mktemp("use_with_a_long_directory_name_so_that_model_paths_exceed_80_columns")
    extra = root / "extra_math.jsonl"  # the optional piece: made available later
    flow = json.loads(json.dumps(MINI))
    flow["stages"]["evaluate"]["config"]["optional_tasks"] = [f"arith_rc:{extra}"]
    path = root / "mini.yaml"
    path.write_text(yaml.safe_dump(flow, sort_keys=False))
    wd = root / "runs" / "mini"
    first = olmoflow("run", str(path), "--workdir", str(wd))
    state = json.loads((wd / "flow.json").read_text())
    return {"root": root, "flow": path, "workdir": wd, "state": state, "first": first, "extra": extra}


def _art(mini: dict, stage: str) -> Path:
    return mini["workdir"] / mini["state"]["stages"][stage]["artifact"]


def _copy_workdir(mini: dict, dest: Path) -> Path:
    shutil.copytree(mini["workdir"], dest)
    return dest


def test_every_checkpoint_is_usable_without_tokenizer_and_by_id(mini, cli):
    """chat by id prefix (the training run artifact: its final checkpoint), generate on an intermediate
    checkpoint, eval on another; none given --tokenizer. Eval's table, printed to a pipe, is not cut
    at 80 columns (its title holds the whole model path)."""
    run = _art(mini, "pretrain")
    aid = (run / "COMPLETE").read_text().strip()
    p = cli("chat", "--model", aid[:4], "--max-new-tokens", "2", input="hello\n", cwd=mini["root"])
    assert p.returncode == 0
    p = cli("generate", "--model", str(run / "checkpoints" / "step-2"), "--prompt", "12 + 7 =", "--max-new-tokens", "3")
    assert "prompt" in p.stderr
    model = run / "checkpoints" / "step-4"
    assert len(str(model)) > 80
    p = cli("eval", "--model", str(model), "--tasks", "arith_rc", "--limit", "1")
    assert "acc_raw" in p.stdout
    assert any(str(model) in ln for ln in p.stdout.splitlines())


@pytest.mark.slow
def test_tokenizer_is_found_through_lineage_after_the_workdir_moved(mini, cli, tmp_path):
    moved = tmp_path / "elsewhere"
    shutil.move(str(_copy_workdir(mini, tmp_path / "copy")), moved)
    ckpt = moved / mini["state"]["stages"]["pretrain"]["artifact"] / "checkpoints" / "step-2"
    p = cli("generate", "--model", str(ckpt), "--prompt", "3 + 4 =", "--max-new-tokens", "2")
    assert p.returncode == 0
    # a model that is no artifact and has no tokenizer beside it still needs --tokenizer, and says so
    loose = tmp_path / "loose"
    shutil.copytree(ckpt, loose)
    p = cli("generate", "--model", str(loose), "--prompt", "x", check=False)
    assert p.returncode == 1 and "pass --tokenizer DIR" in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_artifact_ids_prefixes_and_directory_names_name_the_same_artifact(mini, cli):
    art = _art(mini, "pretrain")
    aid = (art / "COMPLETE").read_text().strip()
    for ref in (aid, aid[:12], aid[:4], art.name):
        p = cli("lineage", ref, "--workdir", str(mini["workdir"]))
        assert p.stdout.splitlines()[0].startswith(f"pretrain (pretrain) {aid[:12]}"), ref
    p = cli("lineage", aid[:3], "--workdir", str(mini["workdir"]), check=False)
    assert p.returncode == 1 and "at least 4 characters" in p.stderr


def test_ambiguous_prefix_is_one_line_listing_the_candidates(cli, tmp_path):
    for i, stage in enumerate(("sft", "dpo")):
        d = tmp_path / "w" / "artifacts" / f"{stage}-{i:016d}"
        d.mkdir(parents=True)
        aid = f"abcd{i}" + "0" * 59
        (d / "manifest.json").write_text(json.dumps({"id": aid, "stage": stage, "type": stage, "inputs": {}}))
        (d / "COMPLETE").write_text(aid + "\n")
    p = cli("lineage", "abcd", "--workdir", str(tmp_path / "w"), check=False)
    assert p.returncode == 1
    line = p.stderr.strip()
    assert "\n" not in line and "ambiguous" in line and "abcd00000000 (sft" in line and "abcd10000000 (dpo" in line


def test_force_reruns_the_stage_and_its_dependents_only(mini, cli, tmp_path):
    wd = _copy_workdir(mini, tmp_path / "w")
    before = json.loads((wd / "flow.json").read_text())["stages"]
    p = cli("run", str(mini["flow"]), "--workdir", str(wd), "--force", "pretrain")
    after = json.loads((wd / "flow.json").read_text())["stages"]
    assert {n: e["status"] for n, e in after.items()} == {
        "corpus": "cached", "tokenizer": "cached", "tokenize": "cached", "pretrain": "run", "evaluate": "run"}
    assert "stage pretrain: forced to run again" in p.stdout
    assert after["pretrain"]["id"] == before["pretrain"]["id"]  # same inputs + seed: the same artifact again
    assert not list((wd / "artifacts").glob(".replaced-*"))
    p = cli("run", str(mini["flow"]), "--workdir", str(wd), "--force", "nope", check=False)
    assert p.returncode == 1 and "--force nope: no stage 'nope'" in p.stderr


def test_missing_optional_piece_is_named_and_part_of_the_cache_key(mini, cli, tmp_path):
    extra = str(mini["extra"])
    assert f"stage evaluate: optional arith_rc:{extra} skipped" in mini["first"].stdout
    report = (mini["workdir"] / "REPORT.md").read_text()
    assert "Optional parts missing" in report and f"`arith_rc:{extra}`" in report
    manifest = json.loads((_art(mini, "evaluate") / "manifest.json").read_text())
    assert list(manifest["optional_missing"]) == [f"arith_rc:{extra}"]

    wd = _copy_workdir(mini, tmp_path / "w")
    try:  # "install" the missing piece: the evaluate stage runs again and now includes it
        shutil.copy(_art(mini, "corpus") / "eval" / "math_eval.jsonl", extra)
        p = cli("run", str(mini["flow"]), "--workdir", str(wd))
        stages = json.loads((wd / "flow.json").read_text())["stages"]
        assert stages["evaluate"]["status"] == "run" and stages["pretrain"]["status"] == "cached"
        assert "skipped" not in p.stdout
        results = json.loads((wd / stages["evaluate"]["artifact"] / "results.json").read_text())
        assert "arith_rc:extra_math.jsonl" in results["tasks"]
        assert "Optional parts missing" not in (wd / "REPORT.md").read_text()
        p = cli("run", str(mini["flow"]), "--workdir", str(wd))
        assert "0 stage(s) run, 5 cached" in p.stdout
    finally:
        Path(extra).unlink(missing_ok=True)


def test_next_steps_name_the_final_model_and_three_commands(mini):
    """What `olmoflow demo` prints last (flow.cli.print_next_steps), on any flow's workdir."""
    import contextlib
    import io

    from olmoflow.flow.cli import print_next_steps

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        model = print_next_steps(mini["workdir"])
    final = (_art(mini, "pretrain") / "final").resolve()
    assert model == final
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("final model (pretrain, artifact ") and lines[0].endswith(str(final))
    assert [ln.split()[1] for ln in lines[1:]] == ["chat", "serve", "eval"]
    assert all(f"--model {final}" in ln for ln in lines[1:])


@pytest.mark.slow
def test_demo_ends_with_the_final_model_and_commands(cli, tmp_path):
    p = cli("demo", "--workdir", str(tmp_path / "demo"), "--quick", "--quiet")
    tail = p.stdout.strip().splitlines()[-4:]
    assert tail[0].startswith("final model (rlvr, artifact ")
    model = tail[0].rsplit(" ", 1)[1]
    assert Path(model).name == "final" and (Path(model) / "model.safetensors").is_file()
    assert [ln.split()[:2] for ln in tail[1:]] == [["olmoflow", "chat"], ["olmoflow", "serve"], ["olmoflow", "eval"]]
    # and the first command's model loads without --tokenizer
    cli("generate", "--model", model, "--prompt", "What is 2 + 3?", "--chat", "--max-new-tokens", "4")


def test_prompt_longer_than_the_context_is_refused_or_left_truncated(mini, cli):
    model = mini["state"]["stages"]["pretrain"]["artifact"].split("/")[-1]  # by directory name, from the workdir
    long_prompt = "1 + 2 = 3 . " * 400  # far more than tiny-1m's 512 tokens
    p = cli("generate", "--model", model, "--prompt", long_prompt, check=False, cwd=mini["workdir"])
    assert p.returncode == 1 and "the model's context is 512" in p.stderr and "--truncate" in p.stderr
    p = cli("generate", "--model", model, "--prompt", long_prompt, "--truncate", "--max-new-tokens", "3",
            cwd=mini["workdir"])
    assert "warning: the prompt is" in p.stderr and "kept its last 509 tokens" in p.stderr
    assert "prompt 509 tokens" in p.stderr


def test_tokenizer_is_found_two_artifacts_up_the_lineage(mini, tmp_path):
    """A model artifact whose inputs name no tokenizer (e.g. a soup of checkpoints) finds it through
    the artifact it was made from."""
    from olmoflow.artifacts import find_tokenizer

    wd = _copy_workdir(mini, tmp_path / "w")
    src = wd / mini["state"]["stages"]["pretrain"]["artifact"]
    made = wd / "artifacts" / "soup-0000000000000000"
    shutil.copytree(src / "final", made / "final")
    aid = "f" * 64
    (made / "manifest.json").write_text(json.dumps({"id": aid, "stage": "soup", "type": "soup", "inputs": {
        "model": {"kind": "artifact", "id": (src / "COMPLETE").read_text().strip(), "path": str(src / "final"),
                  "subpath": "final"}}}))
    (made / "COMPLETE").write_text(aid + "\n")
    found = find_tokenizer(made / "final")  # (the copied pretrain artifact's manifest names the original's path)
    assert found.name == Path(mini["state"]["stages"]["tokenizer"]["artifact"]).name
    assert (found / "tokenizer.json").is_file()
