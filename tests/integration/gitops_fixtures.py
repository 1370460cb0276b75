"""Real bare git remotes and throwaway imagebot configs for the GitOps integration tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from paths import REPO_ROOT

SEED = REPO_ROOT / "examples" / "platform-dev"
STAGING_FILE = "flux/staging-bip-app/dapla-spark/jupyter/jupyter.yaml"
PROD_FILE = "flux/prod-bip-app/dapla-spark/jupyter/jupyter.yaml"
IDENTITY = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.org",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.org",
}


def git(*args: str, cwd: Path | None = None) -> str:
    proc = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={**os.environ, **IDENTITY},
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout


def make_remote(tmp: Path, files: Mapping[str, str] | None = None, name: str = "remote") -> Path:
    """A bare repository (branch master) whose first commit holds `files` (default: the seed)."""
    bare = tmp / f"{name}.git"
    work = tmp / f"{name}-seed"
    git("init", "--quiet", "--bare", "--initial-branch=master", str(bare))
    git("init", "--quiet", "--initial-branch=master", str(work))
    if files is None:
        subprocess.run(["cp", "-a", f"{SEED}/.", str(work)], check=True)
    else:
        for path, text in files.items():
            (work / path).parent.mkdir(parents=True, exist_ok=True)
            (work / path).write_bytes(text.encode())
    git("add", "--all", cwd=work)
    git("commit", "--quiet", "-m", "seed", cwd=work)
    git("push", "--quiet", str(bare), "HEAD:refs/heads/master", cwd=work)
    return bare


def remote_file(bare: Path, path: str, rev: str = "master") -> str:
    return git("--git-dir", str(bare), "show", f"{rev}:{path}")


def remote_log(bare: Path, rev: str = "master") -> list[str]:
    """Commit subjects, newest first."""
    return git("--git-dir", str(bare), "log", "--format=%s", rev).splitlines()


def remote_head(bare: Path, rev: str = "master") -> str:
    return git("--git-dir", str(bare), "rev-parse", rev).strip()


def push_change(bare: Path, tmp: Path, path: str, old: str, new: str, subject: str) -> None:
    """Someone else's commit: clone, replace `old` with `new` in `path`, push."""
    work = tmp / f"other-{len(list(tmp.iterdir()))}"
    git("clone", "--quiet", "--depth", "1", bare.as_uri(), str(work))
    file = work / path
    text = file.read_text()
    assert old in text
    file.write_text(text.replace(old, new, 1))
    git("commit", "--quiet", "-am", subject, cwd=work)
    git("push", "--quiet", "origin", "HEAD:master", cwd=work)


def write_config(
    tmp: Path,
    repo: str,
    environments: Mapping[str, Mapping[str, object]],
    images: Sequence[str] = ("jupyterlab", "jupyterhub"),
) -> Path:
    """An imagebot.toml in `tmp` with the given images and environments (repo shared)."""
    lines = [
        "[registry]",
        'url = "127.0.0.1:5555/jupyter"',
        'auth = "basic"',
        "insecure = true",
    ]
    for image in images:
        dockerfile = tmp / "images" / image / "Dockerfile"
        dockerfile.parent.mkdir(parents=True, exist_ok=True)
        dockerfile.write_text("FROM scratch\n")
        lines += [f"[images.{image}]", f'dockerfile = "images/{image}/Dockerfile"']
    for name, spec in environments.items():
        lines += [f"[environments.{name}]", f'repo = "{repo}"', 'branch = "master"']
        for key, value in spec.items():
            if isinstance(value, dict):
                inner = ", ".join(f"{k} = {_toml(v)}" for k, v in value.items())
                lines.append(f"{key} = {{ {inner} }}")
            else:
                lines.append(f"{key} = {_toml(value)}")
    path = tmp / "imagebot.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _toml(value: object) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


STAGING_TARGETS = {
    "jupyterlab": [
        "spec.values.singleuser.image",
        "spec.values.singleuser.profileList.1.kubespawner_override.image",
    ],
    "jupyterhub": "spec.values.hub.image",
}


def seed_config(tmp: Path, bare: Path) -> Path:
    """staging + prod (promote_from staging) over the platform-dev seed."""
    return write_config(
        tmp,
        str(bare),
        {
            "staging": {"file": STAGING_FILE, "targets": STAGING_TARGETS},
            "prod": {"file": PROD_FILE, "targets": STAGING_TARGETS, "promote_from": "staging"},
        },
    )


def run_imagebot(
    config: Path, *args: str, env: Mapping[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    child = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEBOT_")}
    child.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "imagebot", "--config", str(config), *args],
        capture_output=True,
        text=True,
        env=child,
        timeout=timeout,
        check=False,
    )


class SmartHttpGit:
    """A real smart-HTTP git server (git http-backend as CGI) on loopback that demands a token.

    Requests without `Authorization: Basic base64(user:token)` get 401, like GitHub or Azure
    Repos. `url` is the repository's http:// URL; `requests` records every Authorization header
    seen, to prove where the token went.
    """

    def __init__(self, root: Path, user: str, token: str) -> None:
        import base64
        import http.server
        import threading

        self.root = root
        self.expected = "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()
        self.auth_headers: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer._handle(self)

            def do_POST(self) -> None:
                outer._handle(self)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{name}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handle(self, request: object) -> None:
        from http.server import BaseHTTPRequestHandler

        assert isinstance(request, BaseHTTPRequestHandler)
        auth = request.headers.get("Authorization", "")
        self.auth_headers.append(auth)
        if auth != self.expected:
            request.send_response(401)
            request.send_header("WWW-Authenticate", 'Basic realm="git"')
            request.send_header("Content-Length", "0")
            request.end_headers()
            return
        path, _, query = request.path.partition("?")
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else _read_chunked(request)
        env = {
            "PATH": os.environ["PATH"],
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REMOTE_USER": "deploy",
            "REQUEST_METHOD": request.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": request.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "HTTP_CONTENT_ENCODING": request.headers.get("Content-Encoding", ""),
            "GIT_PROTOCOL": request.headers.get("Git-Protocol", ""),
        }
        proc = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True, check=False
        )
        head, _, payload = proc.stdout.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.decode().split("\r\n"):
            name, _, value = line.partition(": ")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value))
        request.send_response(status)
        for name, value in headers:
            request.send_header(name, value)
        request.send_header("Content-Length", str(len(payload)))
        request.end_headers()
        request.wfile.write(payload)


def _read_chunked(request: object) -> bytes:
    rfile = request.rfile  # type: ignore[attr-defined]
    headers = request.headers  # type: ignore[attr-defined]
    if headers.get("Transfer-Encoding", "").lower() != "chunked":
        return b""
    data = b""
    while True:
        size = int(rfile.readline().strip(), 16)
        if size == 0:
            rfile.readline()
            return data
        data += rfile.read(size)
        rfile.readline()


def push_symlink(bare: Path, tmp: Path, path: str, target: Path) -> None:
    """Someone else's commit: replace `path` with a symlink to `target` (mode 120000)."""
    work = tmp / f"other-{len(list(tmp.iterdir()))}"
    git("clone", "--quiet", "--depth", "1", bare.as_uri(), str(work))
    (work / path).unlink()
    (work / path).symlink_to(target)
    git("add", "--", path, cwd=work)
    git("commit", "--quiet", "-m", "link", cwd=work)
    git("push", "--quiet", "origin", "HEAD:master", cwd=work)


def recording_git(tmp: Path) -> tuple[dict[str, str], Path]:
    """PATH with a `git` that logs its argv (one call a line) to the returned file, then runs git."""
    import shutil

    real = shutil.which("git")
    assert real is not None
    bin_dir = tmp / "recording-bin"
    bin_dir.mkdir()
    log = tmp / "git-argv.log"
    script = bin_dir / "git"
    script.write_text(
        f'#!/bin/sh\nprintf "%s " "$@" >> "{log}"\necho >> "{log}"\nexec {real} "$@"\n'
    )
    script.chmod(0o755)
    log.write_text("")
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}"}, log
