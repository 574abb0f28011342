"""Run untrusted Python (model-written code) in a restricted subprocess.

Used by code benchmarks (HumanEval) and by the code verifiers of post-training: one sandbox for
the whole project.

Layers of defence, outermost first:

1. **Process limits** (``setrlimit`` in the child before exec): CPU seconds (``RLIMIT_CPU``),
   address space (``RLIMIT_AS``, so a 10 GB allocation raises ``MemoryError``), file size
   (``RLIMIT_FSIZE``), number of processes (``RLIMIT_NPROC``), core dumps off.
2. **Wall-clock timeout**: the child runs in its own session; on timeout the whole process group
   is killed with ``SIGKILL``.
3. **Unprivileged user**: when the caller is root and the interpreter is world-readable, the
   child drops to ``nobody`` (uid 65534), so
   ``RLIMIT_NPROC`` is enforced (root ignores it) and file-system permissions deny writes to
   anything the caller owns.
4. **No network**: the child runs in a fresh network namespace (only a down loopback) when the
   host permits it; independently, the preamble's audit hook refuses every
   ``socket`` creation/connection (``unshare(CLONE_NEWNET)`` via libc in the child; with a user
   namespace when unprivileged).
5. **Preamble audit hook** (``sys.addaudithook``) inside the child: refuses opening files for
   writing, creating/removing/renaming paths outside the temporary working directory, starting
   processes (``fork``, ``exec``, ``system``, ``posix_spawn``, ``subprocess``), sockets and
   ``ctypes``.
6. **Clean interpreter**: ``python -I`` (isolated: no ``PYTHON*`` env, no user site), an empty
   environment, and a fresh temporary working directory that is deleted afterwards.

Threat model (honest): this stops accidents and the usual failure modes of model-written code —
infinite loops, fork bombs, memory blow-ups, stray writes, network calls. Audit hooks are not a
security boundary against a determined adversary (C extensions can bypass them), so layers 1-4
are what actually contain a hostile program; when neither root-drop nor ``unshare`` is
available (an unprivileged host without user namespaces) only the in-process hooks guard the
file system and network. For adversarial code use a VM or container on top.
"""

from __future__ import annotations

import functools
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SandboxResult", "run_python", "network_namespace_available"]

_NOBODY = 65534

_PREAMBLE = r'''
import os as _os, sys as _sys
_ROOT = _os.path.realpath(_os.getcwd())
_WRITE_FLAGS = _os.O_WRONLY | _os.O_RDWR | _os.O_CREAT | _os.O_APPEND | _os.O_TRUNC
_PATH_EVENTS = {"os.remove", "os.rename", "os.mkdir", "os.rmdir", "os.chmod", "os.chown",
                "os.symlink", "os.link", "os.truncate", "os.utime", "shutil.rmtree",
                "shutil.copyfile", "shutil.move", "os.chdir"}
_DENY_EVENTS = {"os.fork", "os.forkpty", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
                "subprocess.Popen", "os.kill", "os.killpg", "pty.spawn", "ctypes.dlopen",
                "ctypes.dlsym", "ctypes.cdata", "socket.__new__", "socket.connect",
                "socket.bind", "socket.getaddrinfo", "socket.sendto", "socket.gethostbyname",
                "os.putenv", "os.unsetenv", "sys.addaudithook", "_posixsubprocess.fork_exec"}
_realpath = _os.path.realpath
_fspath = _os.fspath

def _inside(path):
    try:
        if isinstance(path, int):
            return True
        p = _fspath(path)
        if isinstance(p, bytes):
            p = p.decode("utf-8", "replace")
        p = _realpath(p)
    except Exception:
        return False
    return p == _ROOT or p.startswith(_ROOT + "/")

def _hook(event, args):
    if event in _DENY_EVENTS:
        raise PermissionError(f"sandbox: {event} is not allowed")
    if event == "open":
        path, mode, flags = args
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or bool(flags & _WRITE_FLAGS)
        if writing and not _inside(path):
            raise PermissionError(f"sandbox: writing {path!r} outside the sandbox directory is not allowed")
    elif event in _PATH_EVENTS:
        for a in args[:2]:
            if isinstance(a, (str, bytes, _os.PathLike)) and not _inside(a):
                raise PermissionError(f"sandbox: {event} on {a!r} is not allowed")

_sys.addaudithook(_hook)
del _hook
_sys.argv = ["solution.py"]
_code = open("solution.py", encoding="utf-8").read()
_g = {"__name__": "__main__", "__file__": "solution.py", "__builtins__": __builtins__}
exec(compile(_code, "solution.py", "exec"), _g)
'''


@dataclass
class SandboxResult:
    """Outcome of one sandboxed run. ``ok`` is True only for a clean exit with status 0."""

    ok: bool
    returncode: int | None
    stdout: str
    stderr: str
    reason: str  # "ok" | "error" | "timeout" | "cpu_limit" | "memory" | "denied" | "killed" | "output_limit"
    wall_s: float


_CLONE_NEWNET = 0x40000000
_CLONE_NEWUSER = 0x10000000


@functools.cache
def _libc():
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def _unshare_net() -> bool:
    """Move the calling process into a fresh network namespace (loopback down, no routes)."""
    libc = _libc()
    if libc is None or not hasattr(libc, "unshare"):
        return False
    if libc.unshare(_CLONE_NEWNET) == 0:
        return True
    return libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET) == 0


@functools.cache
def network_namespace_available() -> bool:
    """Whether this host lets a child enter a fresh network namespace; probed once."""
    if not sys.platform.startswith("linux") or _libc() is None:
        return False
    probe = "import socket,sys;s=socket.socket();s.settimeout(2)\ntry:\n s.connect(('127.0.0.1',9))\nexcept OSError as e:\n sys.exit(0 if e.errno==101 else 3)"
    try:
        r = subprocess.run([sys.executable, "-I", "-c", probe], preexec_fn=_unshare_net,
                           capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired, subprocess.SubprocessError):
        return False
    return r.returncode == 0


@functools.cache
def _world_accessible_python() -> bool:
    """Whether an unprivileged user can run this interpreter and read its stdlib."""
    import stat

    for target in {os.path.realpath(sys.executable), os.path.realpath(os.__file__)}:
        path = Path(target)
        for parent in reversed(path.parents):
            if not parent.stat().st_mode & stat.S_IXOTH:
                return False
        if not path.stat().st_mode & stat.S_IROTH:
            return False
    return True


def _limits(cpu_s: float, memory_mb: int, max_file_mb: int, max_procs: int, drop_root: bool, net: bool):
    def apply() -> None:
        if net:
            _unshare_net()
        cpu = max(1, int(cpu_s + 0.999))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        mem = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        fsize = max_file_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_NPROC, (max_procs, max_procs))
        if drop_root:
            os.setgroups([])
            os.setgid(_NOBODY)
            os.setuid(_NOBODY)

    return apply


def _classify(rc: int | None, stderr: str, timed_out: bool, wall_s: float, cpu_s: float) -> str:
    if timed_out:
        return "timeout"
    if rc == 0:
        return "ok"
    if rc in (-signal.SIGXCPU, -signal.SIGKILL) and wall_s >= cpu_s * 0.5:
        return "cpu_limit"
    if rc == -signal.SIGXFSZ or "File too large" in stderr:
        return "output_limit"
    if "MemoryError" in stderr or "Cannot allocate memory" in stderr:
        return "memory"
    if "sandbox:" in stderr and "PermissionError" in stderr:
        return "denied"
    if "Resource temporarily unavailable" in stderr or "PermissionError" in stderr or "Permission denied" in stderr:
        return "denied"
    if rc is not None and rc < 0:
        return "killed"
    return "error"


def run_python(
    code: str,
    timeout_s: float = 10.0,
    memory_mb: int = 1024,
    cpu_s: float | None = None,
    max_output_mb: int = 16,
    max_procs: int = 8,
    stdin: str = "",
) -> SandboxResult:
    """Run ``code`` as ``__main__`` in a sandboxed ``python -I`` subprocess and report the outcome.

    The calling process is never affected: all limits apply to the child only, output is capped
    (``max_output_mb``), and the child's temporary directory is removed afterwards.
    """
    cpu_s = float(cpu_s if cpu_s is not None else timeout_s)
    drop_root = os.geteuid() == 0 and _world_accessible_python()
    net = network_namespace_available()
    work = Path(tempfile.mkdtemp(prefix="olmoflow-sbx-"))
    logs = Path(tempfile.mkdtemp(prefix="olmoflow-sbx-out-"))
    try:
        (work / "solution.py").write_text(code, encoding="utf-8")
        (work / "_sandbox_main.py").write_text(_PREAMBLE, encoding="utf-8")
        if drop_root:
            os.chown(work, _NOBODY, _NOBODY)
            os.chmod(work, 0o700)
            for f in work.iterdir():
                os.chown(f, _NOBODY, _NOBODY)
        cmd = [sys.executable, "-I", "-B", "_sandbox_main.py"]
        env = {"PATH": "/usr/bin:/bin", "HOME": str(work), "TMPDIR": str(work), "LANG": "C.UTF-8"}
        t0 = time.perf_counter()
        timed_out = False
        with open(logs / "out", "wb") as out, open(logs / "err", "wb") as err:
            proc = subprocess.Popen(
                cmd, cwd=work, env=env, stdin=subprocess.PIPE, stdout=out, stderr=err,
                start_new_session=True,
                preexec_fn=_limits(cpu_s, memory_mb, max_output_mb, max_procs, drop_root, net),
            )
            try:
                proc.communicate(input=stdin.encode(), timeout=timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)  # the whole group: children too
                except (ProcessLookupError, PermissionError):
                    pass
                proc.wait()
        wall = time.perf_counter() - t0
        cap = max_output_mb * 1024 * 1024
        stdout = (logs / "out").read_bytes()[:cap].decode("utf-8", "replace")
        stderr = (logs / "err").read_bytes()[:cap].decode("utf-8", "replace")
        rc = proc.returncode
        reason = _classify(None if timed_out else rc, stderr, timed_out, wall, cpu_s)
        return SandboxResult(ok=reason == "ok", returncode=rc, stdout=stdout, stderr=stderr,
                             reason=reason, wall_s=wall)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(logs, ignore_errors=True)
