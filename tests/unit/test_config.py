"""imagebot.toml: the shipped file loads; profiles merge; every problem is reported at once."""

from __future__ import annotations

from pathlib import Path

import pytest
from paths import REPO_ROOT

from imagebot.config import ConfigProblems, expand, load_config
from imagebot.errors import ConfigError


def test_shipped_config_loads_with_defaults() -> None:
    config = load_config(REPO_ROOT / "imagebot.toml", env={})
    lab = config.image("jupyterlab")
    assert lab.sets == ("jupyterhub", "base", "datascience", "r")
    assert (lab.python, lab.platform) == ("3.11", "x86_64-manylinux_2_36")
    assert lab.base == "docker.io/library/python:3.11-slim-bookworm"
    hub = config.images["jupyterhub"]
    assert hub.sets == ("jupyterhub", "hub") and hub.rendered is False
    assert [i.name for i in config.locked_images] == ["jupyterlab", "jupyterhub"]
    assert [i.name for i in config.rendered_images] == ["jupyterlab"]
    assert config.environments["prod"].promote_from == "staging"
    assert config.index.url and config.index.url.startswith("https://")


def test_local_profile_overrides_registry_and_build_args_only() -> None:
    prod = load_config(REPO_ROOT / "imagebot.toml", env={})
    local = load_config(REPO_ROOT / "imagebot.toml", profile="local", env={})
    assert local.registry.url == "127.0.0.1:5555/jupyter" and local.registry.insecure
    assert local.image("jupyterlab").build_args["BASE_IMAGE"].startswith("imagebot-local/")
    # What the rendered Dockerfile uses is the same in both (the render ignores profiles anyway).
    assert local.image("jupyterlab").base == prod.image("jupyterlab").base
    assert local.image("jupyterlab").sets == prod.image("jupyterlab").sets


def test_environment_variables_expand_with_defaults() -> None:
    assert expand("${A:-x}/${B}", {"B": "b"}) == "x/b"
    assert expand("${A:-x}", {"A": "a"}) == "a"
    with pytest.raises(KeyError):
        expand("${MISSING}", {})


def write_config(tmp_path: Path, text: str) -> Path:
    (tmp_path / "requirements").mkdir(exist_ok=True)
    (tmp_path / "requirements" / "base.toml").write_text("[python]\n")
    path = tmp_path / "imagebot.toml"
    path.write_text(text)
    return path


MINIMAL = """\
[registry]
url = "registry.example.org/jupyter"

[images.lab]
dockerfile = "jupyter/Dockerfile"
base = "python:3.11-slim"
sets = ["base"]
"""


def test_minimal_config(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, MINIMAL))
    assert config.registry.auth == "auto" and config.index.url is None
    assert config.requirements_dir == tmp_path / "requirements"


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    bad = MINIMAL.replace('url = "registry', 'url = "https://registry').replace(
        'sets = ["base"]', 'sets = ["base", "nope"]\npython = "3"\ncolour = "red"'
    )
    with pytest.raises(ConfigProblems) as caught:
        load_config(write_config(tmp_path, bad + "\n[surprise]\n"))
    text = "\n".join(caught.value.detail_lines())
    assert caught.value.exit_code == 3
    for expected in (
        "registry.url: must not contain a scheme",
        "images.lab.sets: requirement set 'nope' has no file nope.toml",
        "images.lab.python: must be a Python minor version",
        "images.lab.colour: unknown key",
        "surprise: unknown key",
    ):
        assert expected in text


def test_a_hand_written_image_can_be_built_from_locked_sets(tmp_path: Path) -> None:
    hub = '[images.hub]\ndockerfile = "hub/Dockerfile"\nsets = ["base"]\nrender = false\n'
    with pytest.raises(ConfigProblems) as caught:
        load_config(write_config(tmp_path, MINIMAL + hub))
    # not rendered: no base is needed, but the hand-written Dockerfile must exist
    assert [line.split(": ", 1)[1] for line in caught.value.detail_lines()] == [
        "images.hub.dockerfile: hub/Dockerfile does not exist "
        "(hint: write the Dockerfile or fix the path)"
    ]
    (tmp_path / "hub").mkdir()
    (tmp_path / "hub" / "Dockerfile").write_text("FROM scratch\n")
    config = load_config(tmp_path / "imagebot.toml")
    assert [i.name for i in config.locked_images] == ["lab", "hub"]
    assert [i.name for i in config.rendered_images] == ["lab"]


def test_render_must_be_a_boolean(tmp_path: Path) -> None:
    with pytest.raises(ConfigProblems) as caught:
        load_config(write_config(tmp_path, MINIMAL + 'render = "no"\n'))
    assert "images.lab.render: must be true or false, got 'no'" in caught.value.detail_lines()[0]


def test_broken_toml_missing_file_and_unknown_profile(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(write_config(tmp_path, "[registry\n"))
    with pytest.raises(ConfigError, match="unknown profile 'dev'"):
        load_config(write_config(tmp_path, MINIMAL), profile="dev")


def test_unset_variable_without_default_is_a_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigProblems, match="1 problem"):
        load_config(write_config(tmp_path, MINIMAL.replace("registry.example.org", "${REG}")))
    config = load_config(
        write_config(tmp_path, MINIMAL.replace("registry.example.org", "${REG}")),
        env={"REG": "r.io"},
    )
    assert config.registry.url == "r.io/jupyter"
