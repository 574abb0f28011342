"""olmoflow models inside lm-evaluation-harness.

Importing this module registers the model type ``olmoflow`` with lm-eval, so any lm-eval task runs
on a native checkpoint or HF export through olmoflow's harness:

    import olmoflow.eval.lm_eval_adapter  # registers "olmoflow"
    import lm_eval
    lm_eval.simple_evaluate(model="olmoflow", model_args="pretrained=runs/x/model,batch_size=8",
                            tasks=["arc_easy"])

or from the shell: ``python -m lm_eval --model olmoflow --model_args pretrained=PATH --tasks ...
--include_path ...`` after ``import olmoflow.eval.lm_eval_adapter`` in a wrapper, or simply
``python -m olmoflow.eval.lm_eval_adapter --model_args pretrained=PATH --tasks ...`` (the same CLI
with the model registered).
"""

from __future__ import annotations

from typing import Any

from olmoflow.errors import require

__all__ = ["OlmoflowLM"]

_lm_eval_model = require("lm_eval.api.model", "eval")
_registry = require("lm_eval.api.registry", "eval")


@_registry.register_model("olmoflow")
class OlmoflowLM(_lm_eval_model.LM):
    """lm-eval ``LM`` backed by ``olmoflow.eval.lm.HarnessLM`` (loglikelihood, rolling, generate)."""

    def __init__(
        self,
        pretrained: str,
        tokenizer: str | None = None,
        batch_size: int | str = 8,
        max_length: int | str | None = None,
        device: str = "cpu",
        **kwargs: Any,
    ):
        super().__init__()
        from olmoflow.eval.evaluator import load_model_and_tokenizer
        from olmoflow.eval.lm import HarnessLM

        model, tok = load_model_and_tokenizer(pretrained, tokenizer, device=device)
        bs = 8 if str(batch_size).startswith("auto") else int(batch_size)
        self.harness = HarnessLM(model, tok, batch_size=bs,
                                 max_length=int(max_length) if max_length else None, device=device)

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None) -> OlmoflowLM:
        from lm_eval.utils import simple_parse_args_string

        return cls.create_from_arg_obj(simple_parse_args_string(arg_string), additional_config)

    @classmethod
    def create_from_arg_obj(cls, arg_dict: dict, additional_config: dict | None = None) -> OlmoflowLM:
        """model_args win over lm-eval's CLI-level defaults (batch_size, device)."""
        import torch

        extra = {k: v for k, v in (additional_config or {}).items() if v is not None and k in ("batch_size", "device")}
        if str(extra.get("device", "")).startswith("cuda") and not torch.cuda.is_available():
            extra.pop("device")  # lm-eval's CLI default is cuda; stay on CPU when there is none
        return cls(**{**extra, **arg_dict})

    # lm-eval request types ------------------------------------------------------------------
    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        return self.harness.loglikelihood([tuple(r.args) for r in requests])

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        return [ll for ll, _ in self.harness.loglikelihood_rolling([r.args[0] for r in requests])]

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        reqs = []
        for r in requests:
            context, gen_kwargs = r.args
            kw = dict(gen_kwargs or {})
            until = kw.get("until") or []
            kw["until"] = [until] if isinstance(until, str) else list(until)
            if not kw.get("do_sample", False):
                kw["temperature"] = 0.0
            reqs.append((context, kw))
        return self.harness.generate_until(reqs)

    @property
    def eot_token_id(self) -> int:
        return self.harness.eos_id

    @property
    def max_length(self) -> int:
        return self.harness.max_length

    def tok_encode(self, string: str, **kwargs: Any) -> list[int]:
        return self.harness.tok_encode(string)

    def tok_decode(self, tokens: list[int], **kwargs: Any) -> str:
        return self.harness.tok_decode(tokens)


if __name__ == "__main__":  # python -m olmoflow.eval.lm_eval_adapter --model_args pretrained=PATH --tasks ...
    import sys

    from lm_eval.__main__ import cli_evaluate

    if "--model" not in sys.argv:
        sys.argv[1:1] = ["--model", "olmoflow"]
    cli_evaluate()
