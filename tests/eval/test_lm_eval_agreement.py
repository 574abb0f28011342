"""Peer test: our loglikelihoods and accuracies against lm-evaluation-harness's HFLM."""

from __future__ import annotations

import math
import textwrap

import pytest

lm_eval = pytest.importorskip("lm_eval")

from olmoflow.eval.evaluator import evaluate, load_model_and_tokenizer  # noqa: E402
from olmoflow.eval.lm import HarnessLM  # noqa: E402


@pytest.fixture(scope="module")
def hflm(hf_model):
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=str(hf_model), dtype="float32", batch_size=4, device="cpu")


def _instances(kind, args_list):
    from lm_eval.api.instance import Instance

    return [Instance(request_type=kind, doc={}, arguments=a, idx=i) for i, a in enumerate(args_list)]


def test_mc_task_matches_lm_eval(hf_model, mc_file, tmp_path, hflm):
    """Same local MC data through lm-eval's task pipeline and through ours: per-item
    loglikelihoods within 1e-4 and identical accuracy."""
    from lm_eval.tasks import TaskManager

    (tmp_path / "toy_mc.yaml").write_text(textwrap.dedent(f"""\
        task: toy_mc
        dataset_path: json
        dataset_kwargs:
          data_files:
            test: {mc_file}
        test_split: test
        output_type: multiple_choice
        doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
        doc_to_choice: "{{{{choices}}}}"
        doc_to_target: gold
        target_delimiter: " "
        metric_list:
          - metric: acc
    """))
    peer = lm_eval.simple_evaluate(model=hflm, tasks=["toy_mc"], task_manager=TaskManager(include_path=str(tmp_path), include_defaults=False),
                                   log_samples=True, num_fewshot=0)
    peer_samples = sorted(peer["samples"]["toy_mc"], key=lambda s: s["doc_id"])
    ours = evaluate(hf_model, [f"rc:{mc_file}"], batch_size=3, quiet=True)["tasks"][f"rc:{mc_file.name}"]
    assert len(ours["items"]) == len(peer_samples) == 8
    for item, s in zip(ours["items"], peer_samples):
        theirs = [r[0][0] if isinstance(r[0], (list, tuple)) else r[0] for r in s["resps"]]
        assert len(theirs) == len(item["loglikelihoods"])
        for a, b in zip(item["loglikelihoods"], theirs):
            assert abs(a - float(b)) < 1e-4
    assert ours["metrics"]["acc_raw"] == pytest.approx(peer["results"]["toy_mc"]["acc,none"], abs=0)
    # and lm-eval's own pipeline driving olmoflow through the adapter gives the same accuracy
    import olmoflow.eval.lm_eval_adapter as adapter

    via = lm_eval.simple_evaluate(model=adapter.OlmoflowLM(pretrained=str(hf_model), batch_size=4), tasks=["toy_mc"],
                                  task_manager=TaskManager(include_path=str(tmp_path), include_defaults=False),
                                  num_fewshot=0)
    assert via["results"]["toy_mc"]["acc,none"] == peer["results"]["toy_mc"]["acc,none"]


def test_loglikelihood_and_rolling_match_hflm(hf_model, hflm):
    model, tok = load_model_and_tokenizer(hf_model)
    ours = HarnessLM(model, tok, batch_size=2)
    pairs = [("Question: What is 12 + 7?\nAnswer:", " 19"), ("The quick brown ", "fox jumps"),
             ("", "Plants need water"), ("Lichens are made of algae and ", " fungi.")]
    got = ours.loglikelihood(pairs)
    ref = hflm.loglikelihood(_instances("loglikelihood", pairs))
    for (a, ga), (b, gb) in zip(got, ref):
        assert abs(a - b) < 1e-4 and ga == gb
    # rolling: one short text and one longer than the 512-token context (scored in windows)
    texts = ["The sun is a star. Rocks are hard.", " ".join(["Ice melts when heated, magnets attract iron."] * 80)]
    got_r = [ll for ll, _ in ours.loglikelihood_rolling(texts)]
    assert len(tok.encode(texts[1])) > ours.max_length
    ref_r = hflm.loglikelihood_rolling(_instances("loglikelihood_rolling", [(t,) for t in texts]))
    for a, b in zip(got_r, ref_r):
        assert math.isclose(a, b, abs_tol=1e-3 * max(1, abs(b) / 100))


def test_adapter_runs_lm_eval_requests(hf_model, hflm):
    """olmoflow registered as an lm-eval model answers all three request types like HFLM."""
    from lm_eval.api.registry import get_model

    import olmoflow.eval.lm_eval_adapter  # noqa: F401

    lm = get_model("olmoflow").create_from_arg_string(f"pretrained={hf_model},batch_size=3",
                                                      {"batch_size": 1, "device": "cuda", "max_batch_size": None})
    assert lm.harness.batch_size == 3  # model_args win over lm-eval's CLI defaults
    pairs = [("Question: Which is a star?\nAnswer:", " the sun"), ("def add(a, b):", "\n    return a + b")]
    for (a, ga), (b, gb) in zip(lm.loglikelihood(_instances("loglikelihood", pairs)),
                                hflm.loglikelihood(_instances("loglikelihood", pairs))):
        assert abs(a - b) < 1e-4 and ga == gb
    gen = _instances("generate_until", [("Question: What is 12 + 7?\nAnswer:", {"until": ["\n"], "max_gen_toks": 8,
                                                                                 "do_sample": False})])
    ours_txt = lm.generate_until(gen)
    peer_txt = hflm.generate_until(gen)
    assert ours_txt == peer_txt
