"""Rendering: golden Dockerfiles for small synthetic specs, determinism, drift, and refusals.

Regenerate the goldens after an intended change with
`IMAGEBOT_UPDATE_GOLDEN=1 pytest tests/unit/test_render.py` and review the diff.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from imagebot.errors import ConfigError, ImagebotError, StaleError
from imagebot.render import (
    DockerfileSpec,
    SetLayer,
    check_rendered,
    render_dockerfile,
)
from imagebot.requirements import RequirementSet, parse_set

GOLDEN = Path(__file__).parent / "golden"
PPM = "https://packagemanager.posit.co/cran/__linux__/bookworm/2025-11-20"


def req_set(name: str, text: str) -> RequirementSet:
    parsed, problems = parse_set(Path("requirements") / f"{name}.toml", text)
    assert not problems and parsed is not None
    return parsed


NOTEBOOK = req_set(
    "notebook",
    '[set]\ndescription = "Notebook"\n[python]\n'
    'jupyterlab = { version = "4.6.6", reason = "ui", requested_by = "@p" }\n',
)
STATS = req_set(
    "stats",
    '[python]\nnumpy = { version = "2.4.6", reason = "arrays", requested_by = "@a" }\n',
)
R_DEBIAN = req_set(
    "r",
    '[set]\nr_source = "debian"\n[r]\n'
    'data.table = { version = "1.14.8", reason = "tables", requested_by = "@k" }\n'
    'IRkernel = { version = "1.3.2", reason = "kernel", requested_by = "@p" }\n',
)
R_CRAN = req_set(
    "rcran",
    '[set]\nr_source = "cran"\ndescription = "R from a snapshot"\n[r]\n'
    'arrow = { version = "22.0.0", reason = "parquet", requested_by = "@k" }\n'
    'IRkernel = { version = "1.3.2", reason = "kernel", requested_by = "@p" }\n',
)
SYSTEM = req_set(
    "system",
    '[apt]\ngit = { version = "1:2.39.5*", reason = "vcs", requested_by = "@p" }\n'
    '"libpq5" = { version = "15.14*", reason = "postgres", requested_by = "@p" }\n'
    '[python]\npsycopg = { version = "3.2.12", reason = "postgres", requested_by = "@p" }\n',
)


def spec(*layers: SetLayer, **changes: object) -> DockerfileSpec:
    fields: dict[str, object] = {
        "image": "lab",
        "base": "docker.io/library/python:3.11-slim-bookworm",
        "source": "https://example.org/stats/images",
        "index_url": "https://index.example.org/simple",
        "request_url": "https://example.org/stats/images#asking-for-a-package",
        "r_repo": PPM,
        "layers": layers,
    }
    fields.update(changes)
    return DockerfileSpec(**fields)  # type: ignore[arg-type]


def lock(s: RequirementSet) -> SetLayer:
    return SetLayer(s, f"requirements/{s.name}.lock")


CASES = {
    "python-only": spec(lock(NOTEBOOK), lock(STATS), index_url=None, source=""),
    "debian-r": spec(lock(NOTEBOOK), SetLayer(R_DEBIAN, None)),
    "cran-r": spec(lock(NOTEBOOK), SetLayer(R_CRAN, None)),
    "apt": spec(lock(SYSTEM), lock(NOTEBOOK), SetLayer(STATS, None)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case: str) -> None:
    rendered = render_dockerfile(CASES[case])
    golden = GOLDEN / f"{case}.Dockerfile"
    if os.environ.get("IMAGEBOT_UPDATE_GOLDEN"):
        golden.write_text(rendered, encoding="utf-8")
    assert rendered == golden.read_text(encoding="utf-8")


@pytest.mark.parametrize("case", sorted(CASES))
def test_render_is_deterministic_and_well_formed(case: str) -> None:
    first, second = render_dockerfile(CASES[case]), render_dockerfile(CASES[case])
    assert first == second
    assert first.startswith("# GENERATED FILE: do not edit. Regenerate with `imagebot render`")
    assert first.endswith("RUN python -m pip check\n")
    assert "# syntax=" not in first  # would pull a frontend image
    for line in first.splitlines():
        assert line == line.rstrip(), f"trailing space: {line!r}"


def test_one_layer_per_set_in_declared_order() -> None:
    text = render_dockerfile(CASES["apt"])
    headings = re.findall(r"^# Layer (\d+): set '(\w+)'", text, re.MULTILINE)
    assert headings == [("1", "system"), ("2", "notebook"), ("3", "stats")]
    assert text.index("apt-get install") < text.index("python3 -m venv") < text.index("# Layer 1")


def test_installs_use_hashes_and_leave_no_cache() -> None:
    text = render_dockerfile(CASES["debian-r"])
    pip_lines = [line for line in text.splitlines() if "pip install" in line]
    assert pip_lines and all("--require-hashes" in x and "--no-cache-dir" in x for x in pip_lines)
    assert text.count("apt-get update") == text.count("rm -rf /var/lib/apt/lists/*") == 2
    assert "--no-install-recommends" in text


def test_secrets_are_mounted_never_stored() -> None:
    text = render_dockerfile(CASES["cran-r"])
    for line in text.splitlines():
        if line.startswith(("ENV", "ARG", "LABEL", "COPY", "ADD")):
            assert "netrc" not in line and "ca-certificates" not in line
    assert (
        "--mount=type=secret,id=ca-certificates,target=/etc/ssl/certs/ca-certificates.crt" in text
    )
    assert "--mount=type=secret,id=netrc,target=/root/.netrc" in text


def test_debian_r_pins_lowercase_package_names_with_a_glob() -> None:
    text = render_dockerfile(CASES["debian-r"])
    assert "'r-cran-data.table=1.14.8*' 'r-cran-irkernel=1.3.2*'" in text
    assert "IRkernel::installspec" in text


def test_cran_r_installs_from_the_snapshot_and_verifies_versions() -> None:
    text = render_dockerfile(CASES["cran-r"])
    assert f'repos = c(CRAN = "{PPM}")' in text
    assert '"arrow" = "22.0.0", "IRkernel" = "1.3.2"' in text
    assert "quit(status = 1)" in text


def test_no_r_means_no_r_base_and_no_kernel() -> None:
    text = render_dockerfile(CASES["python-only"])
    assert "r-base-core" not in text and "IRkernel" not in text and "apt-get" not in text
    assert "/etc/pip.conf" not in text  # no index configured


def test_index_config_points_pip_and_uv_at_the_build_arg() -> None:
    text = render_dockerfile(CASES["debian-r"])
    assert "ARG IMAGEBOT_INDEX_URL=https://index.example.org/simple" in text
    assert '"index-url = ${IMAGEBOT_INDEX_URL}"' in text and "/etc/uv/uv.toml" in text
    assert "Ask for one at https://example.org/stats/images#asking-for-a-package" in text


def test_cran_without_repository_is_refused() -> None:
    with pytest.raises(ConfigError, match="r_repo is missing"):
        render_dockerfile(spec(SetLayer(R_CRAN, None), r_repo=None))


@pytest.mark.parametrize("url", ["https://x.org/a b", "https://x.org/'; rm -rf /", "ftp:/nope"])
def test_unsafe_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="is not a plain URL"):
        render_dockerfile(spec(lock(NOTEBOOK), index_url=url))


@pytest.mark.parametrize(
    "url", ["https://x/$(touch pwned)", "https://x/\nRUN id", "https://user:pw@x.org/"]
)
def test_unsafe_request_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="is not a plain URL"):
        render_dockerfile(spec(lock(NOTEBOOK), request_url=url))


def _broken(name: str, field: str, value: str) -> RequirementSet:
    """A set that bypassed parse_set's validation (only a bug could make one)."""
    from dataclasses import replace

    if field == "description":
        return replace(NOTEBOOK, description=value)
    entry = NOTEBOOK.python[0]
    entry = replace(entry, version=value) if field == "version" else replace(entry, name=value)
    return replace(NOTEBOOK, python=(entry,))


@pytest.mark.parametrize(
    "changes",
    [
        {"image": "lab\nRUN id"},
        {"base": "python:3.11\nRUN id"},
        {"layers": (lock(_broken("notebook", "description", "x)\nRUN id\n# (")),)},
        {"layers": (lock(_broken("notebook", "version", "4.6.6\nRUN id")),)},
        {"layers": (lock(_broken("notebook", "name", "jupyterlab\rRUN id")),)},
    ],
    ids=["image", "base", "description", "version", "name"],
)
def test_render_cannot_emit_an_extra_line_from_any_input(changes: dict[str, object]) -> None:
    with pytest.raises(ImagebotError, match="not one line of printable text"):
        render_dockerfile(spec(lock(NOTEBOOK), **changes))


def test_check_rendered_passes_when_equal_and_diffs_when_not() -> None:
    check_rendered("jupyter/Dockerfile", "same\n", "same\n")
    with pytest.raises(StaleError) as caught:
        check_rendered("jupyter/Dockerfile", "FROM a\nRUN x\n", "FROM b\nRUN x\n")
    assert caught.value.exit_code == 5
    assert "-FROM a\n+FROM b\n" in caught.value.diff
    assert caught.value.diff.startswith("--- jupyter/Dockerfile (committed)\n")
    with pytest.raises(StaleError, match="is missing"):
        check_rendered("jupyter/Dockerfile", None, "FROM b\n")


def test_the_site_profile_names_the_vetted_repository_where_index_build_writes_it() -> None:
    from imagebot.cran import CRAN_DIR
    from imagebot.render import REPO_FROM_INDEX_ARG

    assert REPO_FROM_INDEX_ARG == "${IMAGEBOT_INDEX_URL%/simple}/" + CRAN_DIR
