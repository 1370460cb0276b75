"""write_atomically: all files or none, modes kept, symlinks followed, a one-line error;
read_text: line ends kept, one exception for every unreadable input."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagebot.errors import ImagebotError
from imagebot.files import Unreadable, read_text, write_atomically


def test_inside_refuses_a_symlink_out_of_the_tree_before_writing_anything(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    outside = tmp_path / "bashrc"
    outside.write_text("mine\n")
    (repo / "a.lock").symlink_to(outside)
    (repo / "b.lock").write_text("old\n")
    (repo / "c.lock").symlink_to(repo / "b.lock")  # a link within the tree is fine

    with pytest.raises(ImagebotError, match="refusing to write through it"):
        write_atomically({repo / "b.lock": "new\n", repo / "a.lock": "new\n"}, inside=repo)
    assert outside.read_text() == "mine\n" and (repo / "b.lock").read_text() == "old\n"
    write_atomically({repo / "c.lock": "new\n"}, inside=repo)
    assert (repo / "b.lock").read_text() == "new\n"


def test_keeps_the_mode_and_replaces_a_symlinks_target(tmp_path: Path) -> None:
    script = tmp_path / "run.sh"
    script.write_text("old\n")
    script.chmod(0o755)
    link = tmp_path / "link.yaml"
    target = tmp_path / "real.yaml"
    target.write_text("a: 1\n")
    link.symlink_to(target)

    write_atomically({script: "new\n", link: "a: 2\n", tmp_path / "d" / "new.txt": "x"})

    assert script.read_text() == "new\n" and script.stat().st_mode & 0o777 == 0o755
    assert link.is_symlink() and target.read_text() == "a: 2\n"
    assert (tmp_path / "d" / "new.txt").stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "link.yaml", "real.yaml", "run.sh"]


def test_an_explicit_mode_wins(tmp_path: Path) -> None:
    path = tmp_path / "install.sh"
    write_atomically({path: "echo\n"}, mode=0o755)
    assert path.stat().st_mode & 0o777 == 0o755


def test_failure_names_the_file_and_changes_nothing(tmp_path: Path) -> None:
    first = tmp_path / "first.txt"
    first.write_text("before\n")
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a directory should be\n")

    with pytest.raises(ImagebotError, match=r"cannot write .*blocker") as caught:
        write_atomically({first: "after\n", blocker / "second.txt": "x"})

    assert caught.value.exit_code == 1
    assert first.read_text() == "before\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker", "first.txt"]


def test_read_text_keeps_line_ends_and_refuses_what_is_not_utf8_text(tmp_path: Path) -> None:
    crlf = tmp_path / "crlf.toml"
    crlf.write_bytes(b'[set]\r\ndescription = "x"\r\n')
    assert read_text(crlf) == '[set]\r\ndescription = "x"\r\n'
    (tmp_path / "latin1.toml").write_bytes(b"caf\xe9\n")
    (tmp_path / "dir.toml").mkdir()
    for name, reason in (
        ("latin1.toml", "is not UTF-8 text (byte 3)"),
        ("dir.toml", "is a directory, not a file"),
        ("missing.toml", "file not found"),
    ):
        with pytest.raises(Unreadable) as caught:
            read_text(tmp_path / name)
        assert caught.value.reason == reason
        assert caught.value.missing == (name == "missing.toml")
