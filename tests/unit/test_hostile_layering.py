"""Hostile-input suite, image layering's share (issues 10 and 16).

New inputs of the assembled build: the base image reference (it is looked up in a registry and
pinned into the build), the archive the engine hands back from the installer container, and the
previous assembly's manifest (its annotations name the packages a layer holds).
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable

import pytest

from imagebot import layers
from imagebot.assemble import split_archive
from imagebot.errors import EngineError
from tests.unit.conftest import Hostile, Project, Result, assert_refused


def _base_arg(value: str) -> Callable[[Project, pytest.MonkeyPatch], None]:
    def setup(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
        text = project.config.read_text().replace(
            'sets = ["base", "extra"]\n',
            f'sets = ["base", "extra"]\nbuild_args = {{ BASE_IMAGE = "{value}" }}\n',
        )
        project.config.write_text(text)

    return setup


BASE_ROWS = [
    Hostile("base-arg-with-space", _base_arg("python 3.11"), ("build", "lab"), 3, "BASE_IMAGE"),
    Hostile(
        "base-arg-upper-case-repository",
        _base_arg("docker.io/Library/python:3.11"),
        ("build", "lab"),
        3,
        "BASE_IMAGE",
    ),
    Hostile(
        "base-arg-with-a-second-tag",
        _base_arg("python:3.11:evil"),
        ("build", "lab"),
        3,
        "BASE_IMAGE",
    ),
]


@pytest.mark.parametrize("case", BASE_ROWS, ids=lambda c: c.id)
def test_a_base_image_that_is_not_a_reference_is_refused(
    case: Hostile,
    locked_project: Project,
    monkeypatch: pytest.MonkeyPatch,
    run_cli: Callable[..., Result],
) -> None:
    assert_refused(case, locked_project, monkeypatch, run_cli)


def _archive(*names: str) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    return raw.getvalue()


@pytest.mark.parametrize(
    "name", ["venv/../../etc/passwd", "/etc/passwd", "venv/lib/../../../root/.bashrc"]
)
def test_an_archive_entry_outside_the_venv_is_refused(name: str) -> None:
    owners = {"evil": ["/etc/passwd", "/opt/venv/lib/x"]}
    with pytest.raises(EngineError, match="outside /opt/venv"):
        split_archive(_archive("venv/lib/x", name), owners, "/opt/venv")


def test_files_no_package_owns_stay_out_of_package_layers() -> None:
    payloads, _ = split_archive(
        _archive("venv/lib/x", "venv/bin/activate"), {"a": ["/opt/venv/lib/x"]}, "/opt/venv"
    )
    assert [e.path for e in payloads["a"]] == ["opt/venv/lib/x"]


@pytest.mark.parametrize(
    "annotations",
    [
        {layers.PACKAGES_ANNOTATION: "a==1@k"},  # no diff id: not a layer imagebot made
        {layers.PACKAGES_ANNOTATION: "a==1@k", layers.DIFF_ID_ANNOTATION: "md5:x"},
        {layers.PACKAGES_ANNOTATION: "", layers.DIFF_ID_ANNOTATION: "sha256:d"},
        "not a table",
    ],
)
def test_a_previous_manifest_layer_without_imagebot_keys_is_never_reused(
    annotations: object,
) -> None:
    manifest = {"layers": [{"digest": "sha256:x", "size": 1, "annotations": annotations}]}
    assert layers.previous_layers(manifest) == []


@pytest.mark.parametrize(
    "output",
    [
        "pip said nothing",
        'IMAGEBOT-INSTALLED {"owners": 1, "removed": []}',
        "IMAGEBOT-INSTALLED not json",
        'IMAGEBOT-INSTALLED ["a"]',
    ],
)
def test_an_installer_result_that_is_not_imagebot_s_is_an_engine_error(output: str) -> None:
    from imagebot.assemble import _installed

    with pytest.raises(EngineError, match="no result"):
        _installed(output)


@pytest.mark.parametrize(
    "body", [b"not json", b"[1, 2]", b'{"layers": [{"digest": 1, "size": "x", "annotations": {}}]}']
)
def test_a_packages_manifest_imagebot_cannot_read_is_not_reused(body: bytes) -> None:
    from imagebot.assemble import _previous_layers
    from imagebot.build import QuietReporter

    assert _previous_layers(body, QuietReporter()) == []
