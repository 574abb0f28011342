"""Direct preference optimisation: ``olmoflow dpo --config FILE``, flow stage ``dpo``.

REFERENCE.md §4: OLMo 3 trains DPO on delta-learning pairs with the length-normalised loss
(``dpo_norm``: each side's log-ratio is averaged over its response tokens), beta 5, the learning
rate decayed linearly to 0, one epoch; standard sigmoid DPO (``sigmoid``: summed log-ratios) is the
other choice. For a pair with policy log-probs ``π_c, π_r`` and reference log-probs ``ρ_c, ρ_r``
(sums over response tokens, or means for ``dpo_norm``)::

    reward_c = β (π_c − ρ_c),  reward_r = β (π_r − ρ_r),  loss = −log σ(reward_c − reward_r)

The reference log-probs come from the frozen initial model (or ``reference``), computed once before
the first step and kept in the run directory (``reference_logps.json``), never recomputed per epoch.
Chosen and rejected sequences of a micro batch run through the model in one forward batch, and the
per-token log-probs come from the chunked LM head (``Olmo.forward(targets=...)``): no [tokens, vocab]
logits. The loss is the mean over the pairs of the global batch (the normalizer is the pair count).

Data: JSONL with ``prompt`` (a string or a list of messages), ``chosen`` and ``rejected`` (a string,
an assistant message, or a list of messages that continue the prompt). Rendered with the one chat
template; only the response's assistant tokens are scored.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from olmoflow.config import Config
from olmoflow.errors import OlmoflowError
from olmoflow.io import atomic_write_text, iter_records, sha256_file
from olmoflow.train.config import OptimizerConfig, ScheduleConfig, TrainConfig
from olmoflow.train.data import IGNORE_INDEX
from olmoflow.train.lm import LMObjective
from olmoflow.train.objective import RunContext

#: the run directory's cache of reference log-probs (key + values per data file)
REFERENCE_CACHE = "reference_logps.json"

__all__ = ["DPOConfig", "DPOObjective", "PreferencePair", "dpo", "dpo_loss", "load_pairs"]


class PreferenceDataConfig(Config):
    """Preference pairs (JSONL: prompt, chosen, rejected)."""

    paths: list[str] = Field(default_factory=list)
    val_paths: list[str] = Field(default_factory=list)
    mixture: dict[str, float] = Field(default_factory=dict)


class DPOConfig(TrainConfig):
    """A :class:`TrainConfig` over preference pairs. One optimizer step takes ``global_batch_pairs``
    pairs, ``micro_batch`` pairs (2 × micro_batch sequences) per forward; ``seq_len`` is the longest
    prompt + response allowed (a longer pair is an error naming its line)."""

    run_dir: str = "runs/dpo"
    data: PreferenceDataConfig = Field(default_factory=PreferenceDataConfig)  # type: ignore[assignment]
    tokenizer: str | None = None
    #: frozen reference model (default: init_from, the model DPO starts from)
    reference: str | None = None
    loss_type: Literal["dpo_norm", "sigmoid"] = "dpo_norm"
    #: OLMo 3: 5 with dpo_norm; sigmoid DPO usually uses ~0.1
    beta: float = Field(5.0, gt=0)
    global_batch_pairs: int = Field(16, gt=0)
    global_batch_tokens: int = 0  # derived: global_batch_pairs × seq_len
    seq_len: int = Field(1024, gt=1)
    micro_batch: int = Field(2, gt=0)
    schedule: ScheduleConfig = Field(default_factory=lambda: ScheduleConfig(name="linear", final_lr_ratio=0.0))
    optimizer: OptimizerConfig = Field(default_factory=lambda: OptimizerConfig(lr=5e-7, weight_decay=0.0, z_loss=0.0))

    @model_validator(mode="before")
    @classmethod
    def _derive_tokens(cls, data: Any) -> Any:
        if isinstance(data, dict):
            pairs = data.get("global_batch_pairs", cls.model_fields["global_batch_pairs"].default)
            seq = data.get("seq_len", cls.model_fields["seq_len"].default)
            if isinstance(pairs, int) and isinstance(seq, int):
                data = {**data, "global_batch_tokens": pairs * seq}
        return data

    @model_validator(mode="after")
    def _need_inputs(self) -> DPOConfig:
        for key, value in (("init_from", self.init_from), ("tokenizer", self.tokenizer),
                           ("data.paths", self.data.paths)):
            if not value:
                raise ValueError(f"dpo needs '{key}'")
        return self


# ---------------------------------------------------------------------------- data


class PreferencePair:
    """One tokenized pair: prompt + chosen and prompt + rejected, each with its response mask."""

    __slots__ = ("chosen", "chosen_mask", "id", "rejected", "rejected_mask", "source")

    def __init__(self, id: str, source: str, chosen, chosen_mask, rejected, rejected_mask):
        self.id, self.source = id, source
        self.chosen, self.chosen_mask = np.asarray(chosen, np.int64), np.asarray(chosen_mask, bool)
        self.rejected, self.rejected_mask = np.asarray(rejected, np.int64), np.asarray(rejected_mask, bool)


def _messages(value: Any, where: str, field: str, role: str) -> list[dict[str, Any]]:
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list) and value and all(isinstance(m, dict) for m in value):
        return value
    raise OlmoflowError(f"{where}: field '{field}' must be a string, a message or a list of messages, "
                        f"got {type(value).__name__}")


def _encode(tok, prompt: list[dict], response: list[dict], where: str, field: str, tools=None):
    """Token ids of prompt + response and the mask of the response's assistant tokens."""
    try:
        ids, mask = tok.encode_chat_with_mask(prompt + response, tools)
        n_prompt = len(tok.encode_chat_with_mask(prompt, tools)[0])
    except OlmoflowError as e:
        raise OlmoflowError(f"{where}: field '{field}': {e}") from None
    resp = np.asarray(mask, bool)
    resp[:n_prompt] = False
    if not resp.any():
        raise OlmoflowError(f"{where}: field '{field}' has no assistant tokens to score")
    return ids, resp


def load_pairs(paths: list[str], tok, max_len: int) -> list[PreferencePair]:
    """Read and tokenize preference pairs; any malformed record is a one-line error naming the file,
    line and field (a preference file is small and hand-made or built by ``olmoflow pairs``: a bad
    record means a bad file, so nothing is skipped silently)."""
    out: list[PreferencePair] = []
    for path in paths:
        for where, rec in iter_records(path):
            for field in ("prompt", "chosen", "rejected"):
                if field not in rec:
                    raise OlmoflowError(f"{where}: missing field '{field}'")
            prompt = _messages(rec["prompt"], where, "prompt", "user")
            sides = {}
            for field in ("chosen", "rejected"):
                ids, mask = _encode(tok, prompt, _messages(rec[field], where, field, "assistant"), where, field,
                                    rec.get("tools"))
                if len(ids) > max_len:
                    raise OlmoflowError(f"{where}: prompt + {field} is {len(ids)} tokens, longer than seq_len {max_len}")
                sides[field] = (ids, mask)
            out.append(PreferencePair(str(rec.get("id", where)), where, *sides["chosen"], *sides["rejected"]))
    if not out:
        raise OlmoflowError(f"no preference pairs in {', '.join(paths)}")
    return out


def _labels(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    labels = np.full(len(ids), IGNORE_INDEX, dtype=np.int64)
    labels[:-1] = np.where(mask[1:], ids[1:], IGNORE_INDEX)
    return labels


class PairSource:
    """Pairs as fixed-size items ``{chosen_ids, chosen_labels, rejected_ids, rejected_labels, ref}``
    (right-padded to ``seq_len``; ``ref`` = the reference log-probs of both sides)."""

    def __init__(self, name: str, pairs: list[PreferencePair], seq_len: int, pad: int):
        self.name, self.pairs, self.seq_len, self.pad = name, pairs, seq_len, pad
        self.ref = np.zeros((len(pairs), 2), dtype=np.float64)

    def __len__(self) -> int:
        return len(self.pairs)

    def _side(self, ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.full(self.seq_len, self.pad, dtype=np.int64)
        y = np.full(self.seq_len, IGNORE_INDEX, dtype=np.int64)
        x[: len(ids)] = ids
        y[: len(ids)] = _labels(ids, mask)
        return x, y

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        p = self.pairs[i]
        ci, cl = self._side(p.chosen, p.chosen_mask)
        ri, rl = self._side(p.rejected, p.rejected_mask)
        return {"chosen_ids": ci, "chosen_labels": cl, "rejected_ids": ri, "rejected_labels": rl,
                "ref": self.ref[i], "index": np.int64(i)}


# ---------------------------------------------------------------------------- loss


def sequence_logps(model, chosen_ids, chosen_labels, rejected_ids, rejected_labels, normalize: bool,
                   autocast=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sequence log-probs of the response tokens of both sides from ONE forward batch
    ([chosen; rejected]); returns ``(chosen_logp, rejected_logp, lengths [2, B])`` (means over
    response tokens when ``normalize``)."""
    import contextlib

    ids = torch.cat([chosen_ids, rejected_ids])
    labels = torch.cat([chosen_labels, rejected_labels])
    # sides are right-padded to seq_len: run only up to the batch's last scored position (causal, so
    # the log-probs are unchanged; a batch of short pairs costs its length, not seq_len)
    scored = torch.nonzero((labels != IGNORE_INDEX).any(0))
    if len(scored):
        end = int(scored[-1]) + 1
        ids, labels = ids[:, :end], labels[:, :end]
    with autocast() if autocast is not None else contextlib.nullcontext():
        out = model(ids, targets=labels, ignore_index=IGNORE_INDEX)
    mask = (labels != IGNORE_INDEX).to(out["logp"].dtype)
    sums = (out["logp"] * mask).sum(-1)
    lengths = mask.sum(-1)
    if normalize:
        sums = sums / lengths.clamp(min=1)
    b = chosen_ids.shape[0]
    return sums[:b], sums[b:], lengths.view(2, b)


def dpo_loss(policy_c: torch.Tensor, policy_r: torch.Tensor, ref_c: torch.Tensor, ref_r: torch.Tensor,
             beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair ``(loss, reward_chosen, reward_rejected)`` of sigmoid DPO on (possibly length-normalised)
    sequence log-probs."""
    reward_c = beta * (policy_c - ref_c)
    reward_r = beta * (policy_r - ref_r)
    return -F.logsigmoid(reward_c - reward_r), reward_c, reward_r


class DPOObjective(LMObjective):
    """Sigmoid / length-normalised DPO over preference pairs, reference log-probs cached once."""

    metric_names = ("loss", "reward_acc", "reward_margin", "chosen_logratio", "rejected_logratio",
                    "chosen_len", "rejected_len")

    def __init__(self, cfg: DPOConfig, name: str = "dpo"):
        super().__init__(cfg, name=name)

    def build_sources(self, run: RunContext) -> tuple[list, list | None]:
        from olmoflow.tokenizer import Tok

        cfg: DPOConfig = self.cfg  # type: ignore[assignment]
        tok = Tok.from_dir(cfg.tokenizer)
        _check_reference(cfg, run.model_cfg, tok)
        pad = run.model_cfg.pad_token_id
        train = [PairSource(Path(p).stem, load_pairs([p], tok, cfg.seq_len), cfg.seq_len, pad) for p in cfg.data.paths]
        val = None
        if cfg.data.val_paths:
            val = [PairSource(Path(p).stem, load_pairs([p], tok, cfg.seq_len), cfg.seq_len, pad)
                   for p in cfg.data.val_paths]
        self._reference_logps(train + (val or []), run)
        return train, val

    def _reference_logps(self, sources: list[PairSource], run: RunContext) -> None:
        """Reference log-probs of every pair: read from the run directory when this data and reference
        were scored before (resume, a rerun), else computed once with the frozen reference model."""
        from olmoflow.model import load

        cfg: DPOConfig = self.cfg  # type: ignore[assignment]
        ref_path = cfg.reference or cfg.init_from
        key = _reference_key(cfg, ref_path, sources)
        cache = Path(cfg.run_dir) / REFERENCE_CACHE
        if cache.is_file():
            stored = json.loads(cache.read_text())
            if stored.get("key") == key:
                for s, values in zip(sources, stored["logps"]):
                    s.ref[:] = np.asarray(values, dtype=np.float64).reshape(s.ref.shape)
                return
        ref = load(ref_path, device=run.device).eval()
        for p in ref.parameters():
            p.requires_grad_(False)
        normalize = cfg.loss_type == "dpo_norm"
        with torch.no_grad():
            for s in sources:
                for start in range(0, len(s), cfg.micro_batch):
                    items = [s[i] for i in range(start, min(len(s), start + cfg.micro_batch))]
                    b = {k: torch.from_numpy(np.stack([it[k] for it in items])).to(run.device)
                         for k in ("chosen_ids", "chosen_labels", "rejected_ids", "rejected_labels")}
                    c, r, _ = sequence_logps(ref, b["chosen_ids"], b["chosen_labels"], b["rejected_ids"],
                                             b["rejected_labels"], normalize, run.autocast)
                    s.ref[start : start + len(items)] = torch.stack([c, r], 1).double().cpu().numpy()
        del ref
        if run.rank == 0:  # JSON floats round-trip exactly; the bytes depend only on data and reference
            atomic_write_text(cache, json.dumps({"key": key, "logps": [s.ref.tolist() for s in sources]}))

    def normalizer(self, micro_batch) -> float:
        return int(micro_batch["chosen_ids"].shape[0])

    def step_tokens(self) -> int:
        return 2 * self.plan.global_batch_tokens

    def loss(self, model, mb):
        cfg: DPOConfig = self.cfg  # type: ignore[assignment]
        dev = self.run.device
        b = {k: v.to(dev) for k, v in mb.items()}
        pc, pr, lengths = sequence_logps(model, b["chosen_ids"], b["chosen_labels"], b["rejected_ids"],
                                         b["rejected_labels"], cfg.loss_type == "dpo_norm", self.run.autocast)
        ref = b["ref"].to(pc.dtype)
        losses, rc, rr = dpo_loss(pc, pr, ref[:, 0], ref[:, 1], cfg.beta)
        d = lambda t: t.detach().sum()  # noqa: E731
        metrics = {"loss": d(losses), "reward_acc": d((rc > rr).float()), "reward_margin": d(rc - rr),
                   "chosen_logratio": d(pc - ref[:, 0]), "rejected_logratio": d(pr - ref[:, 1]),
                   "chosen_len": d(lengths[0]), "rejected_len": d(lengths[1])}
        return losses.sum(), metrics

    @torch.no_grad()
    def validate(self, model) -> dict[str, float] | None:
        """Mean loss and reward accuracy over the validation pairs (each process scores all of them)."""
        if self.val_sampler is None:
            return None
        model.eval()
        sums = {k: 0.0 for k in self.metric_names}
        n = 0
        for src in self.val_sampler.sources:
            for start in range(0, len(src), self.cfg.micro_batch):
                items = [src[i] for i in range(start, min(len(src), start + self.cfg.micro_batch))]
                mb = {k: torch.from_numpy(np.stack([it[k] for it in items])) for k in items[0]}
                _, m = self.loss(model, mb)
                for k in sums:
                    sums[k] += float(m[k])
                n += len(items)
        model.train()
        return {"val_loss": sums["loss"] / n, "val_reward_acc": sums["reward_acc"] / n}


def _reference_key(cfg: DPOConfig, ref_path: str, sources: list[PairSource]) -> str:
    """What the cached reference log-probs depend on: the reference weights' content (not their path,
    so a fresh workdir reproduces the artifact), the loss type, and every pair's tokens and masks."""
    h = hashlib.sha256()
    h.update(json.dumps({"loss_type": cfg.loss_type, "seq_len": cfg.seq_len}).encode())
    from olmoflow.model.io import find_model_dir

    for weights in sorted(find_model_dir(ref_path).glob("*.safetensors")):
        h.update(sha256_file(weights).encode())
    for s in sources:
        for p in s.pairs:
            h.update(p.chosen.tobytes() + b"|" + p.rejected.tobytes() + b"|" + p.chosen_mask.tobytes()
                     + p.rejected_mask.tobytes())
    return h.hexdigest()


def _check_reference(cfg: DPOConfig, model_cfg, tok) -> None:
    """The reference must score the same tokens as the policy: same vocabulary and special ids, and
    the same tokenizer where both directories carry one."""
    from olmoflow.model.io import read_config

    ref_path = cfg.reference or cfg.init_from
    ref_cfg = read_config(ref_path)
    for field in ("vocab_size", "eos_token_id", "pad_token_id"):
        a, b = getattr(ref_cfg, field), getattr(model_cfg, field)
        if a != b:
            raise OlmoflowError(f"key 'reference': {ref_path} has {field}={a} but the policy ({cfg.init_from}) has "
                                f"{field}={b}: the reference must use the policy's tokenizer")
    ref_tok = _tokenizer_json(ref_path)
    ours = Path(cfg.tokenizer) / "tokenizer.json"
    if ref_tok is not None and ours.is_file() and ref_tok.read_bytes() != ours.read_bytes():
        raise OlmoflowError(f"key 'reference': {ref_tok} differs from the tokenizer {ours}: the reference must "
                            "use the policy's tokenizer")
    if tok.vocab_size > model_cfg.vocab_size:
        raise OlmoflowError(f"key 'tokenizer': {cfg.tokenizer} has {tok.vocab_size} tokens, more than the model's "
                            f"vocab_size {model_cfg.vocab_size}")


def _tokenizer_json(model_dir: str) -> Path | None:
    for cand in (Path(model_dir) / "tokenizer.json", Path(model_dir) / "tokenizer" / "tokenizer.json"):
        if cand.is_file():
            return cand
    return None


def dpo(cfg: DPOConfig, quiet: bool = False, resume: bool = False) -> dict[str, Any]:
    """Train ``cfg.init_from`` with DPO on ``cfg.data``; returns the final metrics."""
    from olmoflow.train.trainer import train

    return train(cfg, DPOObjective(cfg), quiet=quiet, resume=resume)
