"""The sandbox stops hostile or broken programs and reports them as failures; the caller survives."""

from __future__ import annotations

import os
import socket
import threading

import pytest

from olmoflow.eval.sandbox import network_namespace_available, run_python


def test_clean_program_runs_and_can_use_its_tmpdir():
    r = run_python("open('x.txt','w').write('hi')\nprint(open('x.txt').read(), sum(range(10)))")
    assert r.ok and r.reason == "ok" and r.stdout.strip() == "hi 45"


def test_infinite_loop_is_stopped():
    r = run_python("while True:\n    pass", timeout_s=1.5)
    assert not r.ok and r.reason in ("timeout", "cpu_limit") and r.wall_s < 5


def test_sleeping_process_is_killed_on_wall_timeout():
    r = run_python("import time\ntime.sleep(60)", timeout_s=1.0)
    assert not r.ok and r.reason == "timeout" and r.wall_s < 4


def test_fork_bomb_is_stopped():
    r = run_python("import os\nwhile True:\n    os.fork()", timeout_s=3)
    assert not r.ok and r.reason in ("denied", "timeout", "error", "killed")
    r2 = run_python("import subprocess\nsubprocess.run(['sh', '-c', ':(){ :|:& };:'])", timeout_s=3)
    assert not r2.ok


def test_10gb_allocation_is_refused():
    r = run_python("x = bytearray(10 * 1024**3)\nprint('allocated')", memory_mb=512)
    assert not r.ok and r.reason == "memory" and "allocated" not in r.stdout


def test_network_connection_to_localhost_fails():
    # a real listener on 127.0.0.1 in *this* process: reachable from here, not from the sandbox
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    hits = []
    t = threading.Thread(target=lambda: hits.append(srv.accept()), daemon=True)
    t.start()
    try:
        code = f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\nprint('connected')"
        r = run_python(code, timeout_s=5)
        assert not r.ok and "connected" not in r.stdout and r.reason == "denied"
        assert not hits
    finally:
        srv.close()


@pytest.mark.skipif(not network_namespace_available(), reason="host does not allow network namespaces")
def test_network_namespace_blocks_even_without_the_python_hook():
    """The audit hook can be bypassed from C; the namespace layer alone must leave no route out."""
    import subprocess
    import sys

    from olmoflow.eval.sandbox import _unshare_net

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\nprint('connected')"
    try:
        free = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
        assert "connected" in free.stdout  # control: without the namespace the listener is reachable
        boxed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20,
                               preexec_fn=_unshare_net)
        assert boxed.returncode != 0 and "connected" not in boxed.stdout
    finally:
        srv.close()


def test_write_outside_tmpdir_is_denied(tmp_path):
    target = tmp_path / "evil.txt"
    for code in (f"open({str(target)!r}, 'w').write('x')",
                 f"import os\nos.remove({str(tmp_path)!r})",
                 f"import pathlib\npathlib.Path({str(target)!r}).write_text('x')",
                 "import os\nos.mkdir('/tmp/olmoflow-sbx-evil-dir')"):
        r = run_python(code)
        assert not r.ok and r.reason == "denied", (code, r)
    assert not target.exists() and tmp_path.exists()
    assert not os.path.exists("/tmp/olmoflow-sbx-evil-dir")


def test_crash_and_output_flood_are_reported_not_raised():
    assert run_python("raise SystemExit(3)").returncode == 3
    r = run_python("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)", max_output_mb=1, timeout_s=5)
    assert not r.ok and len(r.stdout) <= 1024 * 1024
    # and the caller is fine
    assert sum(range(5)) == 10
