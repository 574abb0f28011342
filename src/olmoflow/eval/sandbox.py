"""Run untrusted Python (model-written code) in an isolated process: the one sandbox of the project.

Used by code benchmarks (HumanEval, via :mod:`olmoflow.scoring.code`) and by the code verifiers
of post-training. Isolation comes from the kernel, not from Python: nothing the program does
inside its interpreter (rewriting frames, ``ctypes``, ``os.open(dir_fd=...)``, ``os.setsid``,
forking) can switch it off.

How a run is set up (Linux, caller is root — the full guarantees):

1. The caller starts a small trusted *launcher* (``python -I -S -c _LAUNCHER``; no
   ``preexec_fn``, so it is safe from a threaded caller). The launcher calls
   ``unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS)`` and forks
   the namespace's *init* (pid 1), which dies with the launcher (``PR_SET_PDEATHSIG``).
2. init builds a new root: a read-only tmpfs holding read-only, ``nosuid`` bind mounts of the
   system directories and of the interpreter's prefix (so a Python under ``/root/.pyenv`` works
   whatever the permissions of ``/root``), ``/dev/{null,zero,random,urandom}``, a fresh
   ``/proc`` of the new PID namespace, and ``/sandbox``: a size-capped tmpfs, the only writable
   place (``/tmp`` links to it), owned by the run's uid. init ``chroot``\\s into it.
3. init forks the program: rlimits (CPU, address space, processes, file size, open files, no
   core), ``PR_SET_NO_NEW_PRIVS``, then it drops to a *per-run uid/gid* from
   ``[_UID_BASE, _UID_BASE + _UID_SPAN)`` (held by a lock file, so concurrent runs never share
   one: ``RLIMIT_NPROC`` counts per uid) and execs ``python -I -B -S main.py`` in ``/sandbox``.
4. When the program exits or its wall-clock time is up, init exits, and the kernel kills every
   process left in the PID namespace: ``setsid`` children, double forks, daemons. The caller
   kills the launcher on its own deadline as a backstop (init follows it).
5. The verdict is reported by init on a status pipe the program never holds (closed before
   ``exec``); the program's own output is only data.

Guarantees by system (``SandboxResult.isolation`` lists what a run actually had; a run with
less than :data:`FULL_ISOLATION` warns once per process):

=============================  ============  ========================  ========================
guarantee                      Linux, root   Linux, non-root with      no namespaces (macOS,
                                             user namespaces           locked-down containers)
=============================  ============  ========================  ========================
rlimits (CPU, AS, FSIZE, ...)  yes           yes                       yes (AS may be ignored)
process limit (RLIMIT_NPROC)   own uid       counts the caller's too   counts the caller's too
kill of every descendant       PID ns        PID ns                    process group only
no network                     net ns        net ns                    audit hook only
writes only in its own dir     mount ns      mount ns                  audit hook only
runs as another uid            yes           no                        no
cannot signal caller's procs   yes           yes (PID ns)              audit hook only
unforgeable scoring verdict    yes           yes                       yes
=============================  ============  ========================  ========================

Non-root with user namespaces: the same launcher, with ``CLONE_NEWUSER`` added and the caller's
uid mapped to itself. The program is then chrooted and holds no capabilities; the kernel refuses
a chrooted process a new user namespace, which closes the chroot escape. Where no namespace can
be made, a Python audit hook (writes outside the directory, sockets, ``ctypes``, ``fork``/
``exec``/``kill``) is installed as a best effort: it is not a security boundary (frames and C
code get around it), so on such hosts run hostile code inside a VM or container.

Cost (2-core CPU shared with other jobs, caller root, same moment): an empty run ~37 ms against
~41-46 ms for the previous audit-hook sandbox — the launcher's interpreter start (~20 ms) and
~15 mounts (~2 ms) are paid for by starting the program's interpreter with ``-S`` (site-packages
put on ``sys.path`` directly; ``.pth`` processing cost ~40 ms). All 164 HumanEval canonical
solutions score in 9.3 s with one worker (6.5 s before: each of a test's calls is a round trip)
and 6.3 s with 4 workers (5.5 s before).
"""

from __future__ import annotations

import fcntl
import functools
import marshal
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from olmoflow.errors import OlmoflowError

__all__ = ["SandboxResult", "SandboxProcess", "run_python", "start_python", "FULL_ISOLATION"]

FULL_ISOLATION = ("pid_namespace", "net_namespace", "mount_namespace", "own_uid", "rlimits")
_UID_BASE = 0x10000000  # far above any real account; one uid (and gid) per concurrent run
_UID_SPAN = 4096  # lock files in _LOCK_DIR: at most this many, reused
_LOCK_DIR = Path(tempfile.gettempdir()) / "olmoflow-sandbox-uids"
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")

# The best-effort hook, used only when the OS could not confine writes (no mount namespace:
# the program does not run in /sandbox) — not a security boundary. Without a PID namespace and
# uid of its own a program could signal every process of the caller, hence os.kill and friends.
_HOOK = r'''
import os as _os, sys as _sys
_ROOT = _os.path.realpath(_os.getcwd())
_W = _os.O_WRONLY | _os.O_RDWR | _os.O_CREAT | _os.O_APPEND | _os.O_TRUNC
_PATHS = {"os.remove", "os.rename", "os.mkdir", "os.rmdir", "os.chmod", "os.chown", "os.symlink",
          "os.link", "os.truncate", "os.utime", "shutil.rmtree", "shutil.copyfile", "shutil.move"}
_DENY = {"socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo", "socket.sendto",
         "ctypes.dlopen", "ctypes.dlsym", "sys.addaudithook", "os.kill", "os.killpg", "os.fork",
         "os.forkpty", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "subprocess.Popen",
         "_posixsubprocess.fork_exec", "pty.spawn"}
def _inside(p, _rp=_os.path.realpath, _fs=_os.fspath):
    try:
        p = _fs(p)
        p = p.decode() if isinstance(p, bytes) else p
        p = _rp(p)
    except Exception:
        return False
    return p == _ROOT or p.startswith(_ROOT + "/")
def _hook(event, args):
    if event in _DENY:
        raise PermissionError(f"sandbox: {event} is not allowed")
    if event == "open":
        path, mode, flags = args
        w = (isinstance(mode, str) and any(c in mode for c in "wax+")) or bool(flags & _W)
        if w and not isinstance(path, int) and not _inside(path):
            raise PermissionError(f"sandbox: writing {path!r} is not allowed")
    elif event in _PATHS:
        for a in args[:2]:
            if isinstance(a, (str, bytes, _os.PathLike)) and not _inside(a):
                raise PermissionError(f"sandbox: {event} on {a!r} is not allowed")
_sys.addaudithook(_hook)
del _hook
'''

_MAIN = r'''
import os, sys
sys.path += _SITE  # the interpreter runs with -S: site-packages without .pth processing (-40 ms)
import builtins
builtins.exit = builtins.quit = sys.exit  # what site would have added
if os.getcwd() != "/sandbox":  # no mount namespace: only the best-effort hook guards writes
    exec(_HOOK)
del _HOOK, _SITE
sys.argv = ["solution.py"]
_g = {"__name__": "__main__", "__file__": "solution.py", "__builtins__": __builtins__}
exec(compile(open("solution.py", encoding="utf-8").read(), "solution.py", "exec"), _g)
'''

# Trusted launcher, run as ``python -I -S -c _LAUNCHER CONFIG_HEX`` by the caller (see the module
# docstring). Writes one marshalled dict on the status fd: how the program ended, what isolation held.
_LAUNCHER = r'''
import ctypes, fcntl, marshal, os, resource, signal, sys
cfg = marshal.loads(bytes.fromhex(sys.argv[1]))  # marshal, not json: no imports, ~5 ms less
status_fd = cfg["status_fd"]
os.set_inheritable(status_fd, False)
libc = ctypes.CDLL(None, use_errno=True)
NS, PID, NET, IPC, UTS, USER = 0x20000, 0x20000000, 0x40000000, 0x08000000, 0x04000000, 0x10000000
RDONLY, NOSUID, NODEV, NOEXEC, REMOUNT, BIND, REC, PRIVATE = 1, 2, 4, 8, 32, 4096, 16384, 1 << 18
iso = ["rlimits"]
root = os.geteuid() == 0
uid0, gid0 = os.getuid(), os.getgid()

def report(**kw):
    os.write(status_fd, marshal.dumps(dict(kw, isolation=iso)))

def mount(src, dst, fstype, flags, data=None):
    if libc.mount(src and src.encode(), dst.encode(), fstype and fstype.encode(), flags, data and data.encode()):
        e = ctypes.get_errno()
        raise OSError(e, f"mount {src} on {dst}: {os.strerror(e)}")

userns = False  # unprivileged: namespaces inside a user namespace, no other uid to drop to
unshare = getattr(libc, "unshare", lambda flags: -1)  # Linux only
prctl = getattr(libc, "prctl", lambda *args: -1)
if root and unshare(NS | PID | NET | IPC | UTS) == 0:
    iso += ["pid_namespace", "net_namespace", "mount_namespace"]
elif unshare(USER | NS | PID | NET | IPC | UTS) == 0:
    iso += ["pid_namespace", "net_namespace", "mount_namespace"]
    userns = True
    maps = (("setgroups", "deny"), ("uid_map", f"{uid0} {uid0} 1"), ("gid_map", f"{gid0} {gid0} 1"))
    for name, text in maps:  # ourselves, mapped: the tmpfs files can then be made
        with open("/proc/self/" + name, "w") as f:
            f.write(text)
elif unshare(USER | PID | NET) == 0:
    iso += ["pid_namespace", "net_namespace"]

def bind_ro(new, src):
    dst = new + src
    if os.path.islink(src) and not os.path.isdir(dst):
        os.symlink(os.readlink(src), dst)
        return
    os.makedirs(dst, exist_ok=True)
    mount(src, dst, None, BIND | REC)
    st = os.statvfs(src).f_flag  # flags a user namespace may not drop (noexec, atime) are kept
    keep = [(8, NOEXEC), (1024, 1024), (2048, 2048), (4096, 1 << 21)]
    mount(None, dst, None, BIND | REMOUNT | RDONLY | NOSUID | NODEV | sum(m for f, m in keep if st & f))

def build_root():
    new, uid = cfg["root"], cfg["uid"]
    mount(None, "/", None, REC | PRIVATE)
    mount("tmpfs", new, "tmpfs", NOSUID | NODEV, "size=1m,mode=755")
    for src in cfg["ro_binds"]:
        if os.path.lexists(src):
            bind_ro(new, src)
    os.makedirs(new + "/dev")
    for d in ("null", "zero", "random", "urandom"):
        open(new + "/dev/" + d, "w").close()
        mount("/dev/" + d, new + "/dev/" + d, None, BIND)
    os.makedirs(new + "/proc")
    try:
        mount("proc", new + "/proc", "proc", NOSUID | NODEV | NOEXEC)
    except OSError:  # a container masking parts of /proc refuses a new one: go without
        pass
    os.makedirs(new + "/sandbox")
    owner = "" if userns else f",uid={uid},gid={uid}"
    mount("tmpfs", new + "/sandbox", "tmpfs", NOSUID | NODEV, f"size={cfg['disk_mb']}m,nr_inodes=4096,mode=700{owner}")
    for name, path in cfg["files"].items():
        with open(path, "rb") as f, open(new + "/sandbox/" + name, "wb") as g:
            g.write(f.read())
        if not userns:
            os.chown(new + "/sandbox/" + name, uid, uid)
    os.symlink("/sandbox", new + "/tmp")
    mount(None, new, None, BIND | REMOUNT | RDONLY | NOSUID | NODEV)
    os.chroot(new)
    os.chdir("/sandbox")

def run_program():
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in cfg["fds"]]
    for target, fd in enumerate(high, start=3):
        os.dup2(fd, target)
    os.closerange(3 + len(cfg["fds"]), 1 << 16)
    lim = cfg["limits"]
    for name, value in lim.items():
        try:
            resource.setrlimit(getattr(resource, name), (value, value + (1 if name == "RLIMIT_CPU" else 0)))
        except (ValueError, OSError):
            if sys.platform.startswith("linux"):  # elsewhere RLIMIT_AS may not be settable
                raise
    prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS: setuid binaries gain nothing
    if "own_uid" in iso:
        os.setgroups([])
        os.setgid(cfg["uid"])
        os.setuid(cfg["uid"])
    home = "/sandbox" if "mount_namespace" in iso else cfg["workdir"]
    env = dict(cfg["env"], HOME=home, TMPDIR=home)
    os.execve(cfg["python"], [cfg["python"], "-I", "-B", "-S", "main.py"], env)

def init():
    prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG: die with the launcher
    if "mount_namespace" in iso:
        build_root()
        if not userns:
            iso.append("own_uid")
    else:
        os.chdir(cfg["workdir"])
    child = os.fork()
    if child == 0:
        try:
            run_program()
        except BaseException:
            import traceback
            traceback.print_exc()
        os._exit(127)
    for fd in cfg["fds"]:
        os.close(fd)
    def expire(*_):
        report(kind="timeout")
        os._exit(0)  # pid 1 exiting: the kernel kills everything left in the namespace
    signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, cfg["timeout_s"])
    while True:
        try:
            pid, st = os.wait()
        except ChildProcessError:
            break
        if pid == child:
            break
    signal.setitimer(signal.ITIMER_REAL, 0)
    if os.WIFSIGNALED(st):
        report(kind="signal", value=os.WTERMSIG(st))
    else:
        report(kind="exit", value=os.WEXITSTATUS(st))
    os._exit(0)

try:
    pid = os.fork() if "pid_namespace" in iso else 0
    if pid == 0:
        try:
            init()
        except BaseException as e:
            report(kind="setup_error", value=f"{type(e).__name__}: {e}")
        os._exit(0)
    os.waitpid(pid, 0)
except BaseException as e:
    report(kind="setup_error", value=f"{type(e).__name__}: {e}")
'''


@dataclass
class SandboxResult:
    """Outcome of one sandboxed run. ``ok`` is True only for a clean exit with status 0.

    ``returncode`` is negative for a signal, as in :mod:`subprocess`; ``isolation`` names the
    mechanisms this run had (:data:`FULL_ISOLATION` on Linux as root)."""

    ok: bool
    returncode: int | None
    stdout: str
    stderr: str
    reason: str  # "ok" | "error" | "timeout" | "cpu_limit" | "memory" | "denied" | "killed" | "output_limit"
    wall_s: float
    isolation: tuple[str, ...] = field(default=())


@functools.cache
def _ro_binds() -> tuple[str, ...]:
    """System directories plus every directory the interpreter needs, outermost only."""
    paths = {*_SYSTEM_DIRS, sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             str(Path(os.path.realpath(sys.executable)).parent.parent)}
    real = sorted({p if p in _SYSTEM_DIRS else os.path.realpath(p) for p in paths})
    return tuple(p for p in real if not any(p != q and p.startswith(q.rstrip("/") + "/") for q in real))


@functools.cache
def _site_packages() -> list[str]:
    import site

    return [p for p in site.getsitepackages() if os.path.isdir(p)]


class _UidLock:
    """A uid no other concurrent run (in any process on this host) holds, via a lock file."""

    def __init__(self) -> None:
        _LOCK_DIR.mkdir(mode=0o700, exist_ok=True)
        for _ in range(64):
            uid = _UID_BASE + random.randrange(_UID_SPAN)
            fd = os.open(_LOCK_DIR / str(uid), os.O_CREAT | os.O_RDWR | os.O_NOFOLLOW, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self.uid, self._fd = uid, fd
            return
        raise RuntimeError("sandbox: no free uid after 64 tries")

    def release(self) -> None:
        os.close(self._fd)


_warned: set[tuple[str, ...]] = set()


def _warn_degraded(iso: tuple[str, ...]) -> None:
    missing = tuple(m for m in FULL_ISOLATION if m not in iso)
    if missing and missing not in _warned:
        _warned.add(missing)
        warnings.warn(f"olmoflow sandbox: running without {', '.join(missing)} on this host "
                      "(see olmoflow.eval.sandbox for what still holds)", RuntimeWarning, stacklevel=3)


def _classify(rc: int | None, stderr: str, timed_out: bool, wall_s: float, cpu_s: float) -> str:
    if timed_out:
        return "timeout"
    if rc == 0:
        return "ok"
    if rc in (-signal.SIGXCPU, -signal.SIGKILL) and wall_s >= cpu_s * 0.5:
        return "cpu_limit"
    if rc == -signal.SIGXFSZ or "File too large" in stderr or "No space left on device" in stderr:
        return "output_limit"
    if "MemoryError" in stderr or "Cannot allocate memory" in stderr:
        return "memory"
    if any(s in stderr for s in ("PermissionError", "Permission denied", "Read-only file system",
                                 "Resource temporarily unavailable", "Network is unreachable")):
        return "denied"
    if rc is not None and rc < 0:
        return "killed"
    return "error"


class SandboxProcess:
    """A running sandboxed program (from :func:`start_python`). With ``channel=True`` the program
    holds fds 3 (reads what :meth:`send` writes) and 4 (what :meth:`recv_line` reads), for a
    caller that talks to it while it runs (the code scorer calls functions this way)."""

    def __init__(self, code: str, *, timeout_s: float, memory_mb: int, cpu_s: float | None,
                 max_output_mb: int, max_procs: int, max_files: int, disk_mb: int, stdin: str | None,
                 channel: bool) -> None:
        self.timeout_s = timeout_s
        self.cpu_s = float(cpu_s if cpu_s is not None else timeout_s)
        self._cap = max_output_mb * 1024 * 1024
        self._uid = _UidLock()
        self._tmp = Path(tempfile.mkdtemp(prefix="olmoflow-sbx-"))  # 0700, the caller's only
        self._buf = b""
        self.deadline = time.monotonic() + timeout_s
        work = self._tmp / "work"
        work.mkdir()
        (self._tmp / "root").mkdir()
        files = {"solution.py": code, "main.py": f"_HOOK = {_HOOK!r}\n_SITE = {_site_packages()!r}\n{_MAIN}"}
        for name, text in files.items():
            (work / name).write_text(text, encoding="utf-8")
        status_r, status_w = os.pipe()
        self._status = status_r
        keep = [status_w]
        child_fds: list[int] = []
        self._to_child = self._from_child = -1
        if channel:
            req_r, self._to_child = os.pipe()
            os.set_blocking(self._to_child, False)  # a program that stops reading cannot block us
            self._from_child, resp_w = os.pipe()
            child_fds = [req_r, resp_w]
            keep += child_fds
        mb = 1024 * 1024
        limits = {"RLIMIT_CPU": max(1, int(self.cpu_s + 0.999)), "RLIMIT_AS": memory_mb * mb,
                  "RLIMIT_FSIZE": max_output_mb * mb, "RLIMIT_NPROC": max_procs,
                  "RLIMIT_NOFILE": max_files, "RLIMIT_CORE": 0}
        cfg = {"status_fd": status_w, "fds": child_fds, "root": str(self._tmp / "root"),
               "workdir": str(work), "uid": self._uid.uid, "disk_mb": disk_mb, "timeout_s": timeout_s,
               "files": {n: str(work / n) for n in files}, "ro_binds": list(_ro_binds()),
               "python": os.path.realpath(sys.executable), "limits": limits,
               "env": {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}}
        self._out = open(self._tmp / "out", "wb")
        self._err = open(self._tmp / "err", "wb")
        self.t0 = time.perf_counter()
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _LAUNCHER, marshal.dumps(cfg).hex()],
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=self._out, stderr=self._err, pass_fds=keep, start_new_session=True)
        except BaseException:
            self._out.close()
            self._err.close()
            self._cleanup()
            raise
        finally:
            for fd in keep:
                os.close(fd)
        if stdin is not None:
            data = stdin.encode()
            if len(data) <= 16384:  # fits the pipe buffer: never blocks
                self._feed(data)
            else:
                threading.Thread(target=self._feed, args=(data,), daemon=True).start()

    def _feed(self, data: bytes) -> None:
        try:
            self._proc.stdin.write(data)  # type: ignore[union-attr]
            self._proc.stdin.close()  # type: ignore[union-attr]
        except (BrokenPipeError, OSError):
            pass

    def _ready(self, fd: int, event: int) -> bool:
        """Wait until ``fd`` is ready (poll: any fd number) or the deadline passes."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            return False
        poller = select.poll()
        poller.register(fd, event)
        return bool(poller.poll(left * 1000))

    def send(self, data: bytes) -> bool:
        """Write to the program's fd 3; False when it no longer reads (or not before the deadline)."""
        view = memoryview(data)
        try:
            while view:
                if not self._ready(self._to_child, select.POLLOUT):
                    return False
                view = view[os.write(self._to_child, view):]
            return True
        except OSError:  # BrokenPipeError: it closed its end
            return False

    def recv_line(self, max_bytes: int = 64 * 1024 * 1024) -> bytes | None:
        """The next line the program writes on fd 4, or None at EOF, past the deadline or past
        ``max_bytes``."""
        while b"\n" not in self._buf:
            if len(self._buf) > max_bytes or not self._ready(self._from_child, select.POLLIN):
                return None
            chunk = os.read(self._from_child, 1 << 16)
            if not chunk:
                return None
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def finish(self, grace_s: float | None = None) -> SandboxResult:
        """Close the channel, wait for the program, clean up, report the outcome.

        ``grace_s``: the caller is done with the program; it gets that long to exit (a server
        sees EOF on fd 3) before it is killed (reason ``killed``). Otherwise it may run to its
        deadline (reason ``timeout`` beyond it)."""
        asked, kill = grace_s is not None, False
        try:
            self._close("_to_child", "_from_child")
            left = max(0.0, self.deadline - time.monotonic())
            try:
                self._proc.wait(timeout=min(grace_s, left) if asked else left + 5.0)
            except subprocess.TimeoutExpired:
                kill = True
            if kill:  # init dies with the launcher, and every process in the namespace with init
                try:
                    os.killpg(self._proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                self._proc.wait()
            wall = time.perf_counter() - self.t0
            raw = os.read(self._status, 1 << 16)
            status = marshal.loads(raw) if raw else {"kind": "killed" if asked else "timeout" if kill else "lost"}
            self._out.close()
            self._err.close()
            stdout = (self._tmp / "out").read_bytes()[: self._cap].decode("utf-8", "replace")
            stderr = (self._tmp / "err").read_bytes()[: self._cap].decode("utf-8", "replace")
            iso = tuple(status.get("isolation", ()))
            if "isolation" in status:
                _warn_degraded(iso)
            kind = status["kind"]
            if kind == "setup_error":
                raise OlmoflowError(f"sandbox setup failed: {status['value']}\n{stderr}")
            rc = {"exit": status.get("value"), "signal": -int(status.get("value", 0))}.get(kind)
            timed_out = kind == "timeout"
            reason = _classify(None if timed_out else rc, stderr, timed_out, wall, self.cpu_s)
            if kind in ("killed", "lost"):
                reason = "killed"
            return SandboxResult(ok=reason == "ok", returncode=rc, stdout=stdout, stderr=stderr,
                                 reason=reason, wall_s=wall, isolation=iso)
        finally:
            self._cleanup()

    def _close(self, *names: str) -> None:
        """Close these fds once (-1 afterwards: a number reused by another thread is never closed)."""
        for name in names:
            fd = getattr(self, name)
            if fd >= 0:
                setattr(self, name, -1)
                os.close(fd)

    def _cleanup(self) -> None:
        self._close("_status", "_to_child", "_from_child")
        self._uid.release()
        shutil.rmtree(self._tmp, ignore_errors=True)


def start_python(
    code: str, timeout_s: float = 10.0, memory_mb: int = 1024, cpu_s: float | None = None,
    max_output_mb: int = 16, max_procs: int = 8, max_files: int = 64, disk_mb: int = 16,
    stdin: str | None = None, channel: bool = False,
) -> SandboxProcess:
    """Start ``code`` as ``__main__`` in the sandbox and return at once (see :class:`SandboxProcess`)."""
    return SandboxProcess(code, timeout_s=timeout_s, memory_mb=memory_mb, cpu_s=cpu_s,
                          max_output_mb=max_output_mb, max_procs=max_procs, max_files=max_files,
                          disk_mb=disk_mb, stdin=stdin, channel=channel)


def run_python(
    code: str, timeout_s: float = 10.0, memory_mb: int = 1024, cpu_s: float | None = None,
    max_output_mb: int = 16, max_procs: int = 8, stdin: str = "", max_files: int = 64, disk_mb: int = 16,
) -> SandboxResult:
    """Run ``code`` as ``__main__`` in the sandbox and report the outcome.

    Limits: ``timeout_s`` wall clock, ``cpu_s`` CPU seconds (default: ``timeout_s``),
    ``memory_mb`` address space, ``max_output_mb`` per file (stdout and stderr included),
    ``max_procs`` processes of the run's uid, ``max_files`` open files, ``disk_mb`` in its
    directory. The caller is never affected and nothing of the run is left behind.
    """
    return start_python(code, timeout_s=timeout_s, memory_mb=memory_mb, cpu_s=cpu_s,
                        max_output_mb=max_output_mb, max_procs=max_procs, max_files=max_files,
                        disk_mb=disk_mb, stdin=stdin).finish()
