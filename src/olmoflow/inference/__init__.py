"""The generation engine used by evaluation, RLVR and serving: KV cache, sampling, batching, stops.

    from olmoflow.inference import Engine, GenerationRequest, generate
    engine = Engine(model, tokenizer=tok, max_batch_size=16)
    [res] = engine.generate([GenerationRequest(prompt=tok.encode("Hello"), max_new_tokens=32,
                                               temperature=0.8, top_p=0.95, seed=1,
                                               stop_token_ids=[tok.eos_id], stop_strings=["\\n\\n"])])
    res.text, res.token_ids, res.finish_reason   # "stop" or "length"

    # continuous batching (the server's loop): add / step / abort
    sid = engine.add(GenerationRequest(prompt=..., max_new_tokens=64))
    for out in engine.step(): out.seq_id, out.token, out.delta, out.result

See docs/inference.md.
"""

from olmoflow.inference.detok import TextStream, decode_fn
from olmoflow.inference.engine import (
    Engine,
    GenerationRequest,
    GenerationResult,
    QueueFullError,
    StepOutput,
    derive_seed,
    generate,
)
from olmoflow.inference.sampling import BatchSampler

__all__ = [
    "BatchSampler",
    "Engine",
    "GenerationRequest",
    "GenerationResult",
    "QueueFullError",
    "StepOutput",
    "TextStream",
    "decode_fn",
    "derive_seed",
    "generate",
]
