"""Edge cases: stop strings next to a character split across tokens, generating inside a caller's
``torch.inference_mode()``, sampled requests with early finishes, and CLI input errors."""

from __future__ import annotations

import math

import pytest
import torch

from olmoflow.inference import Engine, GenerationRequest, TextStream
from olmoflow.model import save

# a byte-level "tokenizer": token 1 ends a stop string and starts a 3-byte character ("€")
_BYTES = {0: b"ab", 1: b"\n\xe2\x82", 2: b"\xac", 3: b"c"}


def _decode_bytes(ids: list[int]) -> str:
    return b"".join(_BYTES.get(i, b"x") for i in ids).decode("utf-8", "replace")


def test_stop_string_found_before_a_split_character():
    """A token that completes a stop string and then starts a multi-byte character stops at once
    (like transformers' StopStringCriteria), not one token later when the character completes."""
    s = TextStream(_decode_bytes, ["\n"])
    assert s.add(0) == "ab"
    assert s.add(1) == ""
    assert s.stopped_by == "\n" and s.text == "ab"
    assert s.finish() == "" and s.text == "ab"
    # no stop string: the split character is still emitted whole, once complete
    s = TextStream(_decode_bytes, ["zz"])
    assert "".join([s.add(0), s.add(1), s.add(2), s.add(3), s.finish()]) == s.text == "ab\n€c"


def test_stop_string_on_the_last_token_reports_stop(olmo3_model):
    """A stop string completed by the token that also reaches max_new_tokens gives "stop", and the
    reported stop agrees with the cut text."""
    req = GenerationRequest(prompt=[5, 6, 7], max_new_tokens=3)
    ids = Engine(olmo3_model).generate([req])[0].token_ids
    table = {ids[0]: b"ab", ids[1]: b"cd", ids[2]: b"\n\xe2\x82"}
    decode = lambda seq: b"".join(table.get(i, b"x") for i in seq).decode("utf-8", "replace")  # noqa: E731
    chunks: list[str] = []
    res = Engine(olmo3_model, tokenizer=decode).generate(
        [GenerationRequest(prompt=[5, 6, 7], max_new_tokens=3, stop_strings=["\n"])],
        lambda i, t, d: chunks.append(d),
    )[0]
    assert res.token_ids == ids
    assert res.text == "abcd" == "".join(chunks)
    assert res.finish_reason == "stop" and res.stop == "\n"


def test_generate_inside_inference_mode_leaves_model_trainable(model_maker):
    """Callers often wrap rollouts in ``torch.inference_mode()``; the engine's temporary weight
    layout must not turn the parameters into inference tensors (the next training step would fail)."""
    model = model_maker("olmo3_gqa", seed=4)
    with torch.inference_mode():
        Engine(model).generate([GenerationRequest(prompt=[5, 6, 7], max_new_tokens=3)])
    assert not any(p.is_inference() for p in model.parameters())
    model.train()
    model(torch.tensor([[5, 6, 7]])).sum().backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    model.eval()


def test_sampled_requests_batch_size_equivalence_and_logprobs(olmo3_model):
    """Sampled requests with stops and different lengths: fewer KV slots (requests admitted as
    others finish) give the same tokens; logprobs are log_softmax(logits / T) of a full forward (before top-k/top-p)."""
    prompts = [[5, 6, 7, 8, 9, 10, 11], [20, 21, 22], list(range(30, 45)), [200, 3]]

    def reqs():
        return [
            GenerationRequest(
                prompt=p,
                max_new_tokens=n,
                temperature=0.8,
                top_k=20,
                top_p=0.9,
                seed=i,
                stop_token_ids=[7, 9],
                logprobs=True,
            )
            for i, (p, n) in enumerate(zip(prompts, [4, 20, 9, 14]))
        ]

    a = Engine(olmo3_model).generate(reqs())
    b = Engine(olmo3_model, max_batch_size=3).generate(reqs())
    assert [r.token_ids for r in a] == [r.token_ids for r in b]
    assert [len(r.token_ids) for r in a] == [4, 20, 9, 14]
    for p, r in zip(prompts, a):
        with torch.no_grad():
            lp = torch.log_softmax(olmo3_model(torch.tensor([p + r.token_ids]))[0].float() / 0.8, -1)
        ref = [lp[len(p) - 1 + i, t].item() for i, t in enumerate(r.token_ids)]
        assert all(math.isclose(x, y, abs_tol=1e-4) for x, y in zip(r.logprobs, ref))


def test_top_logprobs_are_the_most_likely_tokens_of_a_full_forward(olmo3_model):
    """``top_logprobs``: per generated token, the k most likely tokens and their log-probs under the
    same distribution as ``logprobs`` (log_softmax(logits / T)), most likely first; requests that do
    not ask get none, whatever shares their batch."""
    prompt = [5, 6, 7, 8, 9]
    asked = GenerationRequest(prompt=prompt, max_new_tokens=6, temperature=0.7, seed=3, top_logprobs=4)
    plain = GenerationRequest(prompt=[20, 21], max_new_tokens=6, temperature=0.0)
    r, other = Engine(olmo3_model).generate([asked, plain])
    assert asked.logprobs and other.top_logprobs is None and other.logprobs is None
    with torch.no_grad():
        lp = torch.log_softmax(olmo3_model(torch.tensor([prompt + r.token_ids]))[0].float() / 0.7, -1)
    assert len(r.top_logprobs) == len(r.token_ids) == 6
    for i, (tok, alts) in enumerate(zip(r.token_ids, r.top_logprobs)):
        ref = lp[len(prompt) - 1 + i].topk(4)
        assert [t for t, _ in alts] == ref.indices.tolist()
        assert all(math.isclose(v, w, abs_tol=1e-4) for (_, v), w in zip(alts, ref.values.tolist()))
        assert math.isclose(r.logprobs[i], lp[len(prompt) - 1 + i, tok].item(), abs_tol=1e-4)
    with pytest.raises(Exception, match="top_logprobs"):
        Engine(olmo3_model).generate([GenerationRequest(prompt=prompt, top_logprobs=21)])


@pytest.mark.parametrize("device", ["gpu", "cuda:99"])
def test_cli_bad_device_is_one_line_error(device, tiny_tok_dir, model_maker, tmp_path, capsys):
    from olmoflow.cli import main
    from olmoflow.tokenizer import Tok

    if device.startswith("cuda") and torch.cuda.device_count() > 99:
        pytest.skip("that device exists here")
    model = model_maker("olmo2", vocab_size=Tok.from_dir(tiny_tok_dir).vocab_size)
    model_dir = save(model, tmp_path / "model")
    rc = main(
        [
            "generate",
            "--model",
            str(model_dir),
            "--tokenizer",
            str(tiny_tok_dir),
            "--prompt",
            "x",
            "--device",
            device,
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1
    assert len(err.strip().splitlines()) == 1 and device in err
