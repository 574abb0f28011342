"""Where RL rollouts come from: one interface, two backends.

``RolloutBackend.sync(model)`` gives the sampler the learner's current weights;
``generate(prompts, n, ...)`` returns ``n`` samples per prompt with the *sampler's* per-token
log-probs (GRPO's truncated importance sampling corrects for the difference between them and the
learner's). Backends:

- :class:`EngineBackend` (default): the in-process generation engine (batched, KV cache) on a copy
  of the learner's weights. Under FSDP every process gathers the full weights into its copy (the
  tiny and single-GPU case; large runs use a separate sampler).
- :class:`VLLMBackend`: vLLM on GPU machines (learner on some GPUs, vLLM engines on others, weights
  pushed after each update). Written for CUDA hosts with vLLM installed; the in-process engine is
  what CPU runs and the tests use.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Protocol

import torch

from olmoflow.errors import OlmoflowError

__all__ = ["EngineBackend", "RolloutBackend", "Sample", "VLLMBackend", "make_backend"]


@dataclass
class Sample:
    """One sampled response: its tokens (stop token included), the sampler's log-prob of each, text."""

    tokens: list[int]
    logprobs: list[float]
    text: str
    finish_reason: str


class RolloutBackend(Protocol):
    def sync(self, model: torch.nn.Module) -> None: ...

    def generate(self, prompts: list[list[int]], n: int, max_new_tokens: int, temperature: float, top_p: float,
                 seeds: list[list[int]]) -> list[list[Sample]]: ...


def _full_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The learner's weights as plain tensors (DTensor shards gathered under FSDP2)."""
    out = {}
    for k, v in model.state_dict().items():
        if hasattr(v, "full_tensor"):
            v = v.full_tensor()
        out[k] = v.detach()
    return out


class EngineBackend:
    """Rollouts from the one generation engine on a private copy of the learner's weights (so
    sampling never changes the learner's mode, layout or autograd state)."""

    def __init__(self, tokenizer, stop_ids: list[int], max_batch_size: int = 64, device=None,
                 stop_strings: list[str] | None = None):
        self.tok, self.stop_ids, self.max_batch_size, self.device = tokenizer, stop_ids, max_batch_size, device
        self.stop_strings = list(stop_strings or ())
        self.model: torch.nn.Module | None = None

    def sync(self, model: torch.nn.Module) -> None:
        from olmoflow.model import Olmo

        inner = getattr(model, "module", model)
        state = _full_state(inner)
        if self.model is None:
            self.model = Olmo(copy.deepcopy(inner.cfg), init=False).to(self.device or next(iter(state.values())).device)
            self.model.eval()
        with torch.no_grad():
            self.model.load_state_dict(state)

    def generate(self, prompts, n, max_new_tokens, temperature, top_p, seeds):
        from olmoflow.inference.engine import Engine, GenerationRequest

        if self.model is None:
            raise OlmoflowError("rollout backend: sync(model) before generate()")
        reqs = [GenerationRequest(prompt=p, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                                  stop_token_ids=self.stop_ids, stop_strings=self.stop_strings, seed=seeds[i][k],
                                  logprobs=True)
                for i, p in enumerate(prompts) for k in range(n)]
        res = Engine(self.model, tokenizer=self.tok, max_batch_size=self.max_batch_size).generate(reqs)
        samples = [Sample(r.token_ids, list(r.logprobs or []), r.text or "", r.finish_reason) for r in res]
        return [samples[i * n : (i + 1) * n] for i in range(len(prompts))]


class VLLMBackend:
    """vLLM sampler (GPU): the learner's weights are pushed into the engine after each update and
    vLLM returns per-token log-probs of what it sampled. Needs CUDA and the ``vllm`` package."""

    def __init__(self, model_dir: str, tokenizer, stop_ids: list[int], gpu_memory_utilization: float = 0.3,
                 stop_strings: list[str] | None = None):
        try:
            import vllm  # noqa: F401
        except ImportError:
            raise OlmoflowError("rollout backend 'vllm' needs the vllm package (GPU hosts): pip install vllm") from None
        if not torch.cuda.is_available():
            raise OlmoflowError("rollout backend 'vllm' needs a CUDA device; use backend 'engine' on CPU")
        from vllm import LLM

        self.tok, self.stop_ids, self.stop_strings = tokenizer, stop_ids, list(stop_strings or ())
        # an olmoflow HF export (model_type olmo2/olmo3) loads in vLLM as is
        self.llm = LLM(model=model_dir, gpu_memory_utilization=gpu_memory_utilization, enforce_eager=True)

    def sync(self, model: torch.nn.Module) -> None:
        from olmoflow.model.hf import to_hf_state

        inner = getattr(model, "module", model)
        state = to_hf_state(_full_state(inner), inner.cfg)
        runner = self.llm.llm_engine.model_executor.driver_worker.model_runner.model
        runner.load_weights(list(state.items()))

    def generate(self, prompts, n, max_new_tokens, temperature, top_p, seeds):
        from vllm import SamplingParams, TokensPrompt

        out = []
        for i, p in enumerate(prompts):
            params = [SamplingParams(n=1, max_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                                     stop_token_ids=self.stop_ids, stop=self.stop_strings or None, seed=seeds[i][k],
                                     logprobs=0) for k in range(n)]
            res = self.llm.generate([TokensPrompt(prompt_token_ids=p)] * n, params, use_tqdm=False)
            group = []
            for r in res:
                c = r.outputs[0]
                lps = [next(iter(d.values())).logprob for d in (c.logprobs or [])]
                group.append(Sample(list(c.token_ids), lps, c.text, c.finish_reason or "length"))
            out.append(group)
        return out


def make_backend(name: str, tokenizer, stop_ids: list[int], model_dir: str | None = None,
                 max_batch_size: int = 64, stop_strings: list[str] | None = None) -> RolloutBackend:
    """The rollout backend called ``name``; responses end at a stop token or a stop string."""
    if name == "engine":
        return EngineBackend(tokenizer, stop_ids, max_batch_size=max_batch_size, stop_strings=stop_strings)
    if name == "vllm":
        if not model_dir:
            raise OlmoflowError("rollout backend 'vllm' needs an HF export of the starting model (rollout.model_dir)")
        return VLLMBackend(model_dir, tokenizer, stop_ids, stop_strings=stop_strings)
    raise OlmoflowError(f"key 'rollout.backend': unknown backend {name!r} (engine, vllm)")
