"""yamledit: quoting rules, markers, reading refs, and the set-image command's contract."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imagebot import yamledit
from imagebot.cli import app
from imagebot.errors import YamlEditError
from imagebot.tags import ImageRef
from tests.unit.conftest import Result

DIGEST = "sha256:" + "cd" * 32


@pytest.mark.parametrize(
    "value",
    [
        "1.10",
        "2024-04-22",
        "on",
        "Off",
        "y",
        "NO",
        "true",
        "~",
        "null",
        "0x1F",
        "0o17",
        "017",
        "1:20",
        "190:20:30",
        "12",
        "-1",
        "1e3",
        "1.5e-3",
        ".inf",
        ".NaN",
        "",
        "a b",
        "-x",
        "x:",
        "a #b",
        "[x]",
        "{x}",
        "*x",
        "&x",
        "!x",
        "'x",
        '"x',
        "%x",
        "@x",
        "`x",
        "x,y",
        "2001-12-14t21:59:43.10-05:00",
    ],
)
def test_values_that_would_not_read_back_as_strings_are_quoted(value: str) -> None:
    assert yamledit.needs_quotes(value)
    assert yamledit.render_scalar(value, None).startswith('"')


@pytest.mark.parametrize(
    "value",
    [
        "2026.01.30",
        "1.2.3",
        "v1.10",
        "sha-067e444",
        "a1b901039cd8",
        "main",
        "latest",
        "registry.example.org/jupyter/lab:1.2",
        f"lab:1@{DIGEST}",
        "3.11-slim-bookworm",
        "x~y",
    ],
)
def test_ordinary_tags_stay_plain(value: str) -> None:
    assert not yamledit.needs_quotes(value)
    assert yamledit.render_scalar(value, None) == value


def test_quote_styles_escape_correctly() -> None:
    assert yamledit.render_scalar("it's", "'") == "'it''s'"
    assert yamledit.render_scalar('a"b\\c', '"') == '"a\\"b\\\\c"'
    assert yamledit.render_scalar("1.10", "'") == "'1.10'"


def test_markers_are_found_with_and_without_space() -> None:
    text = 'a: x # {"$imagepolicy": "ns:p"}\nb: y #{"$imagepolicy":"ns:p:tag"}\nc: z # {"$imagepolicy": "ns:p:bogus"}\n'
    markers = yamledit.find_policy_markers(text)
    assert [(m.policy, m.field, m.line) for m in markers] == [("ns:p", None, 0), ("ns:p", "tag", 1)]


def test_marker_inside_a_block_scalar_is_not_a_target() -> None:
    text = 'config: |\n  image: x:1 # {"$imagepolicy": "ns:p"}\nimage: x:1 # {"$imagepolicy": "ns:p"}\n'
    result = yamledit.set_image(text, "policy:ns:p", ImageRef.parse("x:2"))
    assert result.text == text.replace("image: x:1 #", "image: x:2 #").replace(
        "  image: x:2", "  image: x:1"
    )


def test_read_image_from_map_string_and_policy_parts() -> None:
    text = (
        "a:\n  name: r.example.org/lab\n  tag: '1.0'\n  digest: " + DIGEST + "\n"
        "b: r.example.org/hub:2\n"
        'c: r.example.org/x # {"$imagepolicy": "ns:x:name"}\n'
        'd: "3" # {"$imagepolicy": "ns:x:tag"}\n'
    )
    assert yamledit.read_image(text, "a") == ImageRef("r.example.org/lab", "1.0", DIGEST)
    assert yamledit.read_image(text, "b") == ImageRef("r.example.org/hub", "2")
    assert yamledit.read_image(text, "policy:ns:x") == ImageRef("r.example.org/x", "3")


def test_repository_key_is_a_name_key() -> None:
    text = 'image:\n  repository: ghcr.io/org/app\n  tag: "6.2.3"\n'
    result = yamledit.set_image(text, "image", ImageRef.parse("ghcr.io/org/app:6.3.0"))
    assert result.text == text.replace("6.2.3", "6.3.0")


def test_digest_key_without_digest_in_ref_is_refused() -> None:
    text = f"image:\n  name: r/x\n  tag: a\n  digest: {DIGEST}\n"
    with pytest.raises(YamlEditError, match="needs a digest"):
        yamledit.set_image(text, "image", ImageRef.parse("r/x:b"))


def test_shared_anchor_on_the_target_scalar_is_refused() -> None:
    text = "a:\n  image: &img r/x:1\nb:\n  image: *img\n"
    with pytest.raises(YamlEditError, match="share"):
        yamledit.set_image(text, "a.image", ImageRef.parse("r/x:2"))


def test_anchored_but_unshared_scalar_keeps_its_anchor_and_tag() -> None:
    text = "a:\n  image: &img !!str r/x:1 # c\n"
    result = yamledit.set_image(text, "a.image", ImageRef.parse("r/x:2"))
    assert result.text == "a:\n  image: &img !!str r/x:2 # c\n"


def test_block_scalar_target_is_refused() -> None:
    with pytest.raises(YamlEditError, match="block scalar"):
        yamledit.set_image("image: |\n  r/x:1\n", "image", ImageRef.parse("r/x:2"))


def test_mask_keeps_offsets() -> None:
    text = "{{- if x }}\na: ${VAR}\nb: {{ .Values.b }}\n"
    masked, spans = yamledit.mask_templates(text)
    assert len(masked) == len(text)
    assert masked.splitlines()[0].startswith("#")
    assert len(spans) == 3


runner = CliRunner()


def test_cli_set_image_in_place(tmp_path: Path) -> None:
    file = tmp_path / "values.yaml"
    file.write_bytes(b"singleuser:\r\n  image: r.example.org/lab:1 # keep\r\n")
    result = runner.invoke(
        app, ["set-image", str(file), "r.example.org/lab:2", "--path", "singleuser.image"]
    )
    assert result.exit_code == 0, result.output
    assert file.read_bytes() == b"singleuser:\r\n  image: r.example.org/lab:2 # keep\r\n"
    assert not list(tmp_path.glob(".*tmp"))


def test_cli_stdout_leaves_the_file(tmp_path: Path) -> None:
    file = tmp_path / "hr.yaml"
    original = 'image: r/x:1 #{"$imagepolicy": "flux:x"}\n'
    file.write_text(original)
    result = runner.invoke(app, ["set-image", str(file), "r/x:2", "--policy", "flux:x", "--stdout"])
    assert result.exit_code == 0
    assert result.stdout == original.replace("x:1", "x:2")
    assert file.read_text() == original


@pytest.mark.parametrize(
    ("text", "args"),
    [
        ("a: [1\n", ["--path", "a"]),
        ("a: r/x:1\n", ["--path", "b"]),
        ("a: r/x:1\n---\na: r/x:1\n", ["--path", "a"]),
        ("a: &x r/x:1\nb: *x\n", ["--path", "a"]),
        ("a: r/x:1\n", ["--policy", "ns:none"]),
    ],
)
def test_cli_refusals_exit_11_and_leave_the_file(
    tmp_path: Path, text: str, args: list[str], run_cli: Callable[..., Result]
) -> None:
    file = tmp_path / "f.yaml"
    file.write_text(text)
    result = run_cli("set-image", file, "r/x:2", *args)  # through the real error boundary
    assert result.code == 11, result.err
    assert len(result.error_lines) == 1
    assert file.read_text() == text


def test_cli_needs_exactly_one_of_path_and_policy(tmp_path: Path) -> None:
    file = tmp_path / "f.yaml"
    file.write_text("a: r/x:1\n")
    result = runner.invoke(app, ["set-image", str(file), "r/x:2"])
    assert result.exit_code != 0


def test_cli_keeps_the_file_mode_and_writes_through_symlinks(tmp_path: Path) -> None:
    real = tmp_path / "real.yaml"
    real.write_text("image: r/x:1\n")
    real.chmod(0o640)
    link = tmp_path / "link.yaml"
    link.symlink_to(real)

    result = runner.invoke(app, ["set-image", str(link), "r/x:2", "--path", "image"])

    assert result.exit_code == 0
    assert link.is_symlink()
    assert real.read_text() == "image: r/x:2\n"
    assert real.stat().st_mode & 0o777 == 0o640


MERGED = """\
base: &base
  name: r/x
  tag: a
one:
  image:
    <<: *base
    tag: b
"""


def test_own_key_next_to_a_merge_is_editable_but_inherited_keys_are_not() -> None:
    result = yamledit.set_image(MERGED, "one.image", ImageRef.parse("r/x:c"))
    assert result.text == MERGED.replace("tag: b", "tag: c")
    with pytest.raises(YamlEditError, match=r"one\.image\.name' goes through an anchor"):
        yamledit.set_image(MERGED, "one.image", ImageRef.parse("r/y:c"))


def test_same_value_through_a_shared_alias_is_a_no_op() -> None:
    text = "lab: &lab r/x:1\nsingleuser:\n  image: *lab\n"
    assert not yamledit.set_image(text, "singleuser.image", ImageRef.parse("r/x:1")).changed


@pytest.mark.parametrize(
    "ref",
    [
        ImageRef("registry.example.org/Hub", "2"),
        ImageRef("r.example.org/x\nmalicious: true", "2"),
        ImageRef("r.example.org/x", '2"'),
        ImageRef("r.example.org/" + "a" * 20_000, "1"),
    ],
)
def test_only_valid_refs_are_spliced(ref: ImageRef) -> None:
    with pytest.raises(YamlEditError, match=r"f\.yaml: image: .*image"):
        yamledit.set_image("image: r.example.org/x:1\n", "image", ref, "f.yaml")


def test_duplicate_keys_are_refused_when_reading_too() -> None:
    text = "image: r.example.org/a:1\nimage: r.example.org/b:1\n"
    with pytest.raises(
        YamlEditError, match=r"f.yaml:1: key 'image' .* appears twice \(lines 1 and 2\)"
    ):
        yamledit.read_image(text, "image", "f.yaml")
