"""Training checkpoints: atomic, checksummed, resumable on any number of processes.

Layout of ``RUN_DIR/checkpoints/step-N/``::

    model.safetensors, config.json   consolidated weights (olmoflow.model.load reads this dir)
    dcp/                             model + optimizer state (torch.distributed.checkpoint), sharded
                                     by the saving processes, re-sharded on load for any world size
    trainer.json                     step, data position, tokens, loss-spike history, config
    rng.json                         torch / numpy / python RNG states (rank 0)
    manifest.json                    sha256 + size of every file above; written last

A save writes everything into ``.tmp-step-N/``, fsyncs every file, writes the manifest, renames
the directory to ``step-N`` and fsyncs the parent. A save killed at any point therefore leaves
either no ``step-N`` or a complete one; a directory without a manifest, or whose files do not
match it, is never loaded (:class:`CheckpointError` names the file).
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from olmoflow.errors import OlmoflowError
from olmoflow.io import sha256_file
from olmoflow.train import distributed as D

__all__ = [
    "CheckpointError",
    "MANIFEST",
    "get_rng_state",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "prune_checkpoints",
    "save_checkpoint",
    "set_rng_state",
    "verify_checkpoint",
    "write_model_dir",
]

MANIFEST = "manifest.json"
FORMAT = "olmoflow-train-ckpt-v1"
_STEP_RE = re.compile(r"^step-(\d+)$")


class CheckpointError(OlmoflowError):
    """A checkpoint is incomplete or corrupt; the message names the file."""


# ----------------------------------------------------------------------------- files and hashing


def _sha256(path: Path) -> str:
    """sha256 of a checkpoint file, flushed to disk on the way (a manifest must not name a file that a
    crash could still lose)."""
    with open(path, "rb") as f:
        digest = sha256_file(f)
        os.fsync(f.fileno())
    return digest


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST)


def _write_manifest(tmp: Path, step: int) -> None:
    files = {str(p.relative_to(tmp)): {"sha256": _sha256(p), "bytes": p.stat().st_size} for p in _files(tmp)}
    for d in sorted({p.parent for p in _files(tmp)}, key=lambda p: -len(p.parts)):
        _fsync_dir(d)
    data = {"format": FORMAT, "step": step, "files": files}
    with open(tmp / MANIFEST, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    _fsync_dir(tmp)


def verify_checkpoint(path: str | Path, full: bool = True) -> dict[str, Any]:
    """Check a checkpoint against its manifest (sizes; sha256 too when ``full``); return the manifest."""
    path = Path(path)
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise CheckpointError(f"{path}: not a complete checkpoint (no {MANIFEST}; the save was interrupted?)")
    try:
        manifest = json.loads(mpath.read_text())
        files = manifest["files"]
    except (json.JSONDecodeError, KeyError) as e:
        raise CheckpointError(f"{mpath}: unreadable manifest ({e})") from None
    for rel, info in files.items():
        f = path / rel
        if not f.is_file():
            raise CheckpointError(f"{f}: missing from checkpoint (listed in {MANIFEST})")
        if f.stat().st_size != info["bytes"]:
            raise CheckpointError(f"{f}: size {f.stat().st_size} != {info['bytes']} in {MANIFEST}: corrupt checkpoint")
        if full:
            digest = _sha256(f)
            if digest != info["sha256"]:
                raise CheckpointError(
                    f"{f}: sha256 {digest[:12]}… does not match {MANIFEST} ({info['sha256'][:12]}…): corrupt checkpoint"
                )
    return manifest


def list_checkpoints(root: str | Path) -> list[tuple[int, Path]]:
    """``(step, dir)`` of every ``step-N`` directory under ``root`` (complete or not), by step."""
    root = Path(root)
    if not root.is_dir():
        return []
    out = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP_RE.match(p.name))]
    return sorted(out)


def latest_checkpoint(root: str | Path, full: bool = False) -> Path | None:
    """The newest checkpoint under ``root`` that passes :func:`verify_checkpoint`, else None."""
    for _, path in reversed(list_checkpoints(root)):
        try:
            verify_checkpoint(path, full=full)
            return path
        except CheckpointError:
            continue
    return None


def prune_checkpoints(root: str | Path, keep_last: int | None) -> None:
    """Delete all but the newest ``keep_last`` complete checkpoints (None keeps everything)."""
    if keep_last is None:
        return
    complete = [p for _, p in list_checkpoints(root) if (p / MANIFEST).is_file()]
    for p in complete[:-keep_last]:
        shutil.rmtree(p, ignore_errors=True)


# ----------------------------------------------------------------------------- RNG


def get_rng_state() -> dict[str, Any]:
    """torch / numpy / python RNG states as JSON-able data (no pickle in checkpoints)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state = {
        "torch": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode(),
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }
    if torch.cuda.is_available():
        state["cuda"] = base64.b64encode(torch.cuda.get_rng_state().numpy().tobytes()).decode()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(torch.frombuffer(bytearray(base64.b64decode(state["torch"])), dtype=torch.uint8))
    n = state["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    p = state["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(torch.frombuffer(bytearray(base64.b64decode(state["cuda"])), dtype=torch.uint8))


# ----------------------------------------------------------------------------- model dir


def write_model_dir(state_dict: dict[str, torch.Tensor], model_config, out_dir: str | Path) -> Path:
    """Write ``model.safetensors`` + ``config.json`` (the native model format of docs/formats.md)."""
    from olmoflow.model.io import save_state

    return save_state(state_dict, model_config, out_dir)


def _full_model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Unsharded fp32 state dict on rank 0 (empty on other ranks); collective under FSDP."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    if not D.is_distributed():
        return {k: v.detach() for k, v in model.state_dict().items()}
    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(model, options=opts)


# ----------------------------------------------------------------------------- save / load


def _writer(path: Path):
    """A DCP FileSystemWriter whose .metadata holds no random save id or absolute path, so the same
    run writes byte-identical checkpoints (the flow's artifact hashes depend on it)."""
    from torch.distributed.checkpoint import FileSystemWriter

    class _Writer(FileSystemWriter):
        def storage_meta(self):
            return None

    return _Writer(str(path))


def save_checkpoint(
    root: str | Path,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    trainer_state: dict[str, Any],
    model_config,
    consolidated: bool = True,
) -> Path:
    """Atomically save a training checkpoint as ``root/step-{step}``; collective under torchrun."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    root = Path(root)
    final = root / f"step-{step}"
    tmp = root / f".tmp-step-{step}"
    if D.rank() == 0:
        root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
    D.barrier()
    model_sd, optim_sd = get_state_dict(model, optimizer)
    with warnings.catch_warnings():  # "assuming the intent is to save in a single process": yes
        warnings.simplefilter("ignore", UserWarning)
        dcp.save({"model": model_sd, "optim": optim_sd}, storage_writer=_writer(tmp / "dcp"))
    full = _full_model_state(model) if (consolidated or not D.is_distributed()) else None
    if D.rank() == 0:
        if full is not None:
            write_model_dir(full, model_config, tmp)
        state = dict(trainer_state, step=step, world_size=D.world_size())
        (tmp / "trainer.json").write_text(json.dumps(state, indent=1, sort_keys=True))
        (tmp / "rng.json").write_text(json.dumps(get_rng_state()))
        _write_manifest(tmp, step)
        if final.exists():  # an older, replaced save of the same step
            shutil.rmtree(final)
        os.rename(tmp, final)
        _fsync_dir(root)
    D.barrier()
    return final


def load_checkpoint(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    verify: bool = True,
    restore_rng: bool = True,
) -> dict[str, Any]:
    """Load model (+ optimizer, RNG) state from a training checkpoint; return its trainer state.

    Works for any world size: the sharded state in ``dcp/`` is re-sharded onto the current
    processes (FSDP-wrapped or plain model).
    """
    path = Path(path)
    verify_checkpoint(path, full=verify)
    try:
        state = json.loads((path / "trainer.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path / 'trainer.json'}: unreadable ({e})") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        _load_dcp(path / "dcp", model, optimizer)
    if restore_rng and (path / "rng.json").is_file():
        set_rng_state(json.loads((path / "rng.json").read_text()))
    return state


def _load_dcp(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer | None) -> None:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    if optimizer is None:
        from torch.distributed.checkpoint.state_dict import get_model_state_dict, set_model_state_dict

        model_sd = get_model_state_dict(model)
        dcp.load({"model": model_sd}, checkpoint_id=str(path))
        set_model_state_dict(model, model_sd)
    else:
        model_sd, optim_sd = get_state_dict(model, optimizer)
        sd = {"model": model_sd, "optim": optim_sd}
        dcp.load(sd, checkpoint_id=str(path))
        set_state_dict(model, optimizer, model_state_dict=sd["model"], optim_state_dict=sd["optim"])
