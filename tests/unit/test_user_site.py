"""The user's site-packages in a pod: imported first, allowed, and off when Python is told so."""

from __future__ import annotations

import os
import site
import subprocess
import sysconfig
import venv
from pathlib import Path

import pytest

from imagebot.incontainer import user_site

VENV_SITE = sysconfig.get_path("purelib")


def test_user_site_goes_just_before_the_venv_site_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(site, "ENABLE_USER_SITE", False)
    path = ["/usr/lib/python311.zip", VENV_SITE, "/other"]
    user_site.enable(path)
    assert path == ["/usr/lib/python311.zip", site.getusersitepackages(), VENV_SITE, "/other"]
    assert site.ENABLE_USER_SITE is True  # pip then defaults to a user install


def test_enable_twice_adds_the_user_site_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(site, "ENABLE_USER_SITE", False)
    path = [VENV_SITE]
    user_site.enable(path)
    user_site.enable(path)
    assert path.count(site.getusersitepackages()) == 1


def test_installed_venv_honours_user_site_and_no_user_site(tmp_path: Path) -> None:
    """A real venv with the module installed: the user site is on sys.path first; `-s` and
    PYTHONNOUSERSITE still turn it off."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    subprocess.run([python, user_site.__file__], check=True)
    assert sorted(p.name for p in Path(purelib).glob("_imagebot_user_site*")) == [
        "_imagebot_user_site.pth",
        "_imagebot_user_site.py",
    ]
    home = tmp_path / "home"
    env = {**os.environ, "HOME": str(home), "PYTHONUSERBASE": str(home / ".local")}
    env.pop("PYTHONNOUSERSITE", None)
    probe = "import site, sys; print(site.ENABLE_USER_SITE, sys.path.index(site.getusersitepackages()) < sys.path.index(sys.argv[1]) if site.getusersitepackages() in sys.path else None)"

    def run(*flags: str, **extra: str) -> str:
        return subprocess.run(
            [python, *flags, "-c", probe, purelib],
            check=True,
            capture_output=True,
            text=True,
            env={**env, **extra},
        ).stdout.strip()

    assert run() == "True True"
    assert run("-s") == "False None"
    assert run(PYTHONNOUSERSITE="1") == "False None"


def test_the_dockerfile_carries_exactly_the_module() -> None:
    """What the image installs is this module, byte for byte: a reviewer can read it here."""
    import base64
    import re

    from imagebot.render import _venv

    encoded = re.search(r"echo (\S+) \| base64 -d", _venv())
    assert encoded is not None
    assert base64.b64decode(encoded.group(1)) == Path(user_site.__file__).read_bytes()
