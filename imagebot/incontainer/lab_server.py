"""Runs inside an image: start JupyterLab's server from its entry point, and ask it.

`jupyter lab` is the jupyter command handing over to the jupyter-lab console script. Its entry
point is called here in a fork of the probe, exactly as that script calls it, so the imports
the server needs (already made by the probe's own import checks) are paid once.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import secrets
import shutil
import signal
import socket
import sys
import time
import traceback
import urllib.request
from collections.abc import Callable
from typing import Any

from .results import Finish, Results

SERVER_LOG = "/tmp/imagebot_server.log"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def lab_entry_point(results: Results) -> Callable[[], Any] | None:
    """The `jupyter-lab` console script's function, or None (recorded) when it is missing."""
    missing = [command for command in ("jupyter", "jupyter-lab") if not shutil.which(command)]
    if missing:
        results.record("jupyter", "jupyter", False, f"not on PATH: {', '.join(missing)}")
        return None
    entry = [ep for ep in md.entry_points(group="console_scripts") if ep.name == "jupyter-lab"]
    if not entry:
        results.record("jupyter", "jupyter", False, "no jupyter-lab console script is installed")
        return None
    main: Callable[[], Any] = entry[0].load()
    return main


def run_lab(lab_main: Callable[[], Any], port: int, token: str) -> None:
    """In the forked child: run the server as the jupyter-lab script would; never returns."""
    sys.argv = [
        "jupyter-lab",
        "--no-browser",
        "--allow-root",
        "--ip=127.0.0.1",
        f"--port={port}",
        f"--ServerApp.token={token}",
        "--ServerApp.root_dir=/tmp",
    ]
    code = 1
    try:
        sys.exit(lab_main())
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()  # os._exit skips it, and the log is the failure's only detail
        sys.stderr.flush()
        os._exit(code)


def http_get(port: int, token: str, path: str) -> tuple[int, bytes]:
    url = f"http://127.0.0.1:{port}{path}"
    request = urllib.request.Request(url, headers={"Authorization": "token " + token})
    with urllib.request.urlopen(request, timeout=5) as response:
        return int(response.status), response.read()


def start_server(results: Results, timeout: float) -> Finish | None:
    lab_main = lab_entry_point(results)
    if lab_main is None:
        return None
    token, port = secrets.token_hex(16), free_port()
    log = open(SERVER_LOG, "w+")  # noqa: SIM115 - read back in finish()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        run_lab(lab_main, port, token)

    def finish() -> None:
        deadline = started + timeout
        status = lab = None
        try:
            while time.monotonic() < deadline and os.waitpid(pid, os.WNOHANG) == (0, 0):
                try:
                    status = json.loads(http_get(port, token, "/api/status")[1])
                    lab = http_get(port, token, "/lab")[0]
                    break
                except Exception:
                    time.sleep(0.1)
            answered = time.monotonic() - started
        finally:
            # Only the answers matter: no graceful shutdown to wait for.
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ChildProcessError, ProcessLookupError):
                pass
        if status is not None:
            results.record(
                "server", "jupyter server", True, f"/api/status answered in {answered:.1f}s"
            )
            ok = lab == 200
            detail = (
                f"jupyter lab {md.version('jupyterlab')} serves /lab"
                if ok
                else f"/lab answered {lab}"
            )
            results.record("jupyter", "jupyterlab", ok, detail)
        else:
            log.seek(0)
            tail = " | ".join(log.read().strip().splitlines()[-6:])
            results.record(
                "server",
                "jupyter server",
                False,
                f"no answer from /api/status within {timeout:.0f}s: {tail}",
            )

    return finish
