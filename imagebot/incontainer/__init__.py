"""Code that runs inside images, on the image's own python3, with the standard library only.

The modules here are ordinary package modules (linted, type-checked and unit-tested on the
host), and import nothing from imagebot. They reach a container as one zip archive
(`probe_archive`) in which they form the package `imagebot_probe`, with `archive_main` as the
archive's `__main__`; `probe_command` runs one of them. What they are told travels as data
(a JSON file or arguments), never as code.
"""

from __future__ import annotations

import functools
import io
import zipfile
from importlib import resources

from imagebot.incontainer.archive_main import PACKAGE

ARCHIVE_PATH = "/tmp/imagebot_probe.zip"
MODULES = ("list_packages", "results", "lab_server", "smoke_probe", "install_packages")
RUNNABLE = ("list_packages", "smoke_probe", "install_packages")  # the modules with a main()
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the same bytes on every run


def _add(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, _FIXED_TIME)
    info.external_attr = 0o644 << 16
    archive.writestr(info, data)


@functools.cache
def probe_archive() -> bytes:
    """The zip archive that `probe_command` runs with the image's python3."""
    source = resources.files(__name__)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        _add(archive, "__main__.py", source.joinpath("archive_main.py").read_bytes())
        _add(archive, f"{PACKAGE}/__init__.py", b"")
        for module in MODULES:
            _add(archive, f"{PACKAGE}/{module}.py", source.joinpath(f"{module}.py").read_bytes())
    return buffer.getvalue()


def probe_command(module: str, *args: str) -> list[str]:
    """The container command that runs module's main() from the archive at ARCHIVE_PATH."""
    if module not in RUNNABLE:
        raise ValueError(f"not an in-container module: {module}")
    return ["python3", ARCHIVE_PATH, module, *args]
