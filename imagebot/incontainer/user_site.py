"""`pip install` in a pod goes to the user's site-packages, which is imported first.

The image's venv (/opt/venv) belongs to root, and a venv hides the user's site-packages, so a
plain `pip install NAME==VERSION` in a pod would fail ("Can not perform a '--user' install").
At build time this file installs itself into the venv's site-packages with a `.pth` file that
runs `enable()` at every interpreter start. `enable()` turns the user site back on, unless `-s`,
`-I` or PYTHONNOUSERSITE turned it off, and puts it just before the venv's site-packages, where a
Python outside a venv has it. pip then defaults to a user install (~/.local, on the pod's home
volume) from the vetted index that /etc/pip.conf names, and what the user installed wins over
the image's version of the same package, as `pip install --user` does anywhere else.

Standard library only: it runs on the image's python3 at every start.
"""

from __future__ import annotations

import py_compile
import shutil
import site
import sys
import sysconfig
from pathlib import Path

MODULE = "_imagebot_user_site"


def enable(path: list[str] | None = None) -> None:
    """Put the user's site-packages on `path` (sys.path) ahead of the venv's, and allow it."""
    if sys.flags.no_user_site:
        return
    entries = sys.path if path is None else path
    user_site = site.getusersitepackages()
    site.ENABLE_USER_SITE = True
    if user_site in entries:
        return
    venv_site = sysconfig.get_path("purelib")
    position = entries.index(venv_site) if venv_site in entries else len(entries)
    entries.insert(position, user_site)


def install(site_packages: Path) -> None:
    """Copy this module into `site_packages`, compiled (hash-checked), with its `.pth` file."""
    target = site_packages / f"{MODULE}.py"
    shutil.copyfile(__file__, target)
    # A hash-checked .pyc is the same bytes on every build and is never rewritten at run time.
    py_compile.compile(
        str(target), doraise=True, invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH
    )
    (site_packages / f"{MODULE}.pth").write_text(f"import {MODULE}; {MODULE}.enable()\n")


if __name__ == "__main__":
    install(Path(sysconfig.get_path("purelib")))
