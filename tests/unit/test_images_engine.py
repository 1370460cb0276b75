"""Engine adapter, pure parts: the build argv, host network for loopback args, refusing
credentials in build args, the throwaway docker config, and build orchestration helpers."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from paths import REPO_ROOT

from imagebot.build import cache_ref, oci_labels
from imagebot.config import load_config
from imagebot.engine import (
    BuildRequest,
    build_command,
    build_network,
    check_build_args,
    find_buildkit_cli,
    resolve_ref,
    throwaway_docker_config,
)
from imagebot.errors import ConfigError, EngineError
from imagebot.registry import Credentials
from imagebot.tags import ImageRef


def test_build_command_has_buildkit_inputs() -> None:
    request = BuildRequest(
        context=Path("/repo"),
        dockerfile=Path("/repo/jupyter/Dockerfile"),
        tags=("r.example/j/lab:abc", "r.example/j/lab:cache"),
        build_args={"BASE_IMAGE": "base:1", "A": "2"},
        labels={"org.opencontainers.image.version": "abc"},
        cache_from=("r.example/j/lab:cache",),
        secrets={"ca-certificates": Path("/etc/ssl/certs/ca-certificates.crt")},
        network="host",
    )
    argv = build_command("/usr/bin/docker", request)
    assert argv[:5] == ["/usr/bin/docker", "build", "--progress", "plain", "-f"]
    text = " ".join(argv)
    assert "-t r.example/j/lab:abc -t r.example/j/lab:cache" in text
    assert (
        "--build-arg A=2 --build-arg BASE_IMAGE=base:1 --build-arg BUILDKIT_INLINE_CACHE=1" in text
    )
    assert "--label org.opencontainers.image.version=abc" in text
    assert "--cache-from r.example/j/lab:cache" in text
    assert "--secret id=ca-certificates,src=/etc/ssl/certs/ca-certificates.crt" in text
    assert "--network host" in text
    assert argv[-1] == "/repo"


@pytest.mark.parametrize(
    ("args", "network"),
    [
        ({"IMAGEBOT_INDEX_URL": "http://127.0.0.1:5556/simple"}, "host"),
        ({"R_REPO": "http://localhost:8080"}, "host"),
        ({"IMAGEBOT_INDEX_URL": "https://storage.googleapis.com/x/simple"}, None),
        ({"BASE_IMAGE": "imagebot-local/bookworm-python:3.11"}, None),
    ],
)
def test_loopback_build_args_need_the_host_network(
    args: dict[str, str], network: str | None
) -> None:
    assert build_network(args) == network


def test_credentials_in_build_args_are_refused() -> None:
    with pytest.raises(ConfigError, match="build arg INDEX contains credentials"):
        check_build_args({"INDEX": "https://bob:pw@index.example/simple"}, [])
    with pytest.raises(ConfigError, match="build arg TOKEN"):
        check_build_args({"TOKEN": "xx-s3cret-xx"}, ["s3cret"])
    check_build_args({"INDEX": "https://index.example/simple"}, ["s3cret"])


def test_throwaway_docker_config_is_private_and_removed() -> None:
    creds = Credentials("imagebot", "pw-123456", "test")
    with throwaway_docker_config({"127.0.0.1:5555": creds}) as directory:
        config = Path(directory) / "config.json"
        assert config.stat().st_mode & 0o777 == 0o600
        assert "127.0.0.1:5555" in json.loads(config.read_text())["auths"]
    assert not Path(directory).exists()


def test_an_interrupted_build_stops_and_takes_the_docker_config_along(tmp_path: Path) -> None:
    """SIGTERM/SIGINT raise errors.Interrupted through run_build (imagebot.main's handler): the
    build process is stopped and the directory holding the registry token is removed."""
    from imagebot.engine import run_build
    from imagebot.errors import Interrupted

    pid_file = tmp_path / "pid"
    config_seen = tmp_path / "config-dir"
    fake_cli = tmp_path / "docker"
    fake_cli.write_text(
        "#!/bin/sh\n"
        f'echo $$ > {pid_file}\necho "$DOCKER_CONFIG" > {config_seen}\n'
        'echo "#1 building"\nexec sleep 60\n'
    )
    fake_cli.chmod(0o755)
    request = BuildRequest(Path(tmp_path), Path(tmp_path / "Dockerfile"), ("r.example/j/lab:x",))

    def interrupt(line: str) -> None:
        directory = Path(config_seen.read_text().strip())
        assert directory.stat().st_mode & 0o777 == 0o700
        raise Interrupted(15)

    creds = Credentials("imagebot", "pw-123456", "test")
    with pytest.raises(Interrupted):
        run_build(request, cli=str(fake_cli), env={"PATH": "/usr/bin:/bin"},
                  auths={"127.0.0.1:5555": creds}, on_line=interrupt)  # fmt: skip
    assert not Path(config_seen.read_text().strip()).exists()
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_cli_override_wins() -> None:
    assert find_buildkit_cli({"IMAGEBOT_DOCKER": "/opt/docker"}) == "/opt/docker"


def test_no_buildkit_cli_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("imagebot.engine.CLI_CANDIDATES", (str(tmp_path / "nope"), "docker"))
    with pytest.raises(EngineError) as caught:
        find_buildkit_cli({"PATH": str(tmp_path)})
    assert "IMAGEBOT_DOCKER" in caught.value.hint


def test_oci_labels() -> None:
    config = load_config(REPO_ROOT / "imagebot.toml", None, {})
    labels = oci_labels(config, "abc123", "deadbeef", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert labels == {
        "org.opencontainers.image.created": "2026-01-02T03:04:05Z",
        "org.opencontainers.image.revision": "deadbeef",
        "org.opencontainers.image.source": "https://github.com/statisticsnorway/imagebot",
        "org.opencontainers.image.version": "abc123",
    }


def test_cache_ref_and_resolve_ref() -> None:
    config = load_config(REPO_ROOT / "imagebot.toml", "local", {})
    assert str(cache_ref(ImageRef("r.example/j/lab", "abc"))) == "r.example/j/lab:cache"
    name, ref = resolve_ref(config, "jupyterlab")
    assert name == "jupyterlab" and ref.name == "127.0.0.1:5555/jupyter/jupyterlab" and ref.tag
    name, ref = resolve_ref(config, "127.0.0.1:5555/jupyter/jupyterhub:x1")
    assert name == "jupyterhub" and ref.tag == "x1"
    assert resolve_ref(config, "example.org/other:1")[0] == ""
