"""The ``olmoflow`` command: user mistakes are one-line errors with a non-zero exit, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from olmoflow.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("argv, rc", [([], 0), (["--help"], 0), (["--version"], 0), (["nope"], 2)])
def test_usage_and_unknown_command_exit_codes(argv, rc, capsys):
    assert main(argv) == rc
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    if argv == ["nope"]:
        assert "unknown command 'nope'" in out.err


def test_os_error_inside_a_command_is_one_line_naming_the_path(tmp_path, capsys):
    """A workdir under a regular file: the OS error is reported as one line naming the path."""
    flow = tmp_path / "f.yaml"
    flow.write_text("name: t\nstages:\n  c: {type: demo_corpus, config: {max_docs_per_source: 2}}\n")
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    rc = main(["run", str(flow), "--workdir", str(blocker / "w"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.startswith("olmoflow run: error: ") and str(blocker / "w") in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_closed_stdout_pipe_exits_quietly(tmp_path):
    """`olmoflow eval --list-tasks | head -1`: the reader going away is no traceback."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.Popen([sys.executable, "-m", "olmoflow.cli", "eval", "--list-tasks"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env, cwd=tmp_path)
    p.stdout.close()  # before the command has printed anything
    err = p.stderr.read().decode()
    p.wait(timeout=60)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert p.returncode != 0


def test_run_without_a_flow_names_only_the_flow_as_required(capsys):
    with pytest.raises(SystemExit) as e:
        main(["run"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "required: flow" in err and "overrides" not in err.splitlines()[-1]


@pytest.mark.parametrize("argv, needle", [
    (["tokenize", "--input", "x.jsonl", "--tokenizer", "t", "--output", "o", "wokers=3"],
     "key 'wokers': unknown key (did you mean 'workers'?)"),
    (["mix", "--input", "a=x", "--output", "o"], "give exactly one of 'ratios' (--ratios) or 'tokens'"),
    (["data", "curate", "--input", "x.jsonl"], "key 'output': Field required"),
    (["eval", "--model", "m", "--tasks", "arith_rc", "limt=3"], "key 'limt': unknown key (did you mean 'limit'?)"),
    (["generate", "--model", "m", "--prompt", "hi", "temperature=-1"], "key 'temperature'"),
])
def test_data_eval_generate_configs_fail_before_any_work_naming_the_key(argv, needle, capsys):
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1, err


def test_command_config_file_is_overridden_by_flags_then_key_values(tmp_path):
    """``--config`` YAML < flags given on the command line < ``key=value`` overrides."""
    import argparse

    from olmoflow.config import config_from_args
    from olmoflow.data.cli import TokenizeCommand

    cfg_file = tmp_path / "tok.yaml"
    cfg_file.write_text("input: [a.jsonl]\ntokenizer: tok\noutput: out\nworkers: 4\nbatch_size: 64\n")
    args = argparse.Namespace(config=str(cfg_file), input=None, tokenizer=None, output="flag-out", workers=None,
                              batch_size=None)
    cfg = config_from_args(TokenizeCommand, args, ["batch_size=128"])
    assert (cfg.input, cfg.output, cfg.workers, cfg.batch_size) == (["a.jsonl"], "flag-out", 4, 128)
