"""Requirement sets: parsing, every validation rule with file:line, and `imagebot add` editing."""

from __future__ import annotations

from pathlib import Path

import pytest
from paths import REPO_ROOT

from imagebot.errors import RequirementsError, UsageError
from imagebot.requirements import (
    NewEntry,
    add_entry,
    add_targets,
    check_sets,
    index_only_problems,
    insert_entry,
    load_sets,
    normalize,
    parse_add_spec,
    parse_set,
)

GOOD = """\
# comment at the top
[set]
description = "Everyday data science"
r_source = "debian"

[python]
numpy = { version = "2.4.6", reason = "arrays", requested_by = "@anna" }
scikit-learn = { version = "1.9.1", import = "sklearn", reason = "models", requested_by = "@ola" }

[r]
data.table = { version = "1.14.8", reason = "tables", requested_by = "@kari" }
IRkernel = { version = "1.3.2", reason = "kernel", requested_by = "@kari" }
"uuid" = { version = "1.1-0", reason = "ids", requested_by = "@kari" }

[apt]
libpq5 = { version = "15.14*", reason = "postgres", requested_by = "@platform" }
"libstdc++6" = { version = "12.2.0-14+deb12u1", reason = "c++ runtime", requested_by = "@platform" }
"""


def problems_of(text: str, name: str = "ds") -> list[str]:
    _, problems = parse_set(Path(f"requirements/{name}.toml"), text)
    return [p.render() for p in problems]


def entry(name: str, version: str = "1.0", **extra: str) -> str:
    fields = {"version": version, "reason": "r", "requested_by": "@x", **extra}
    inner = ", ".join(f'{k} = "{v}"' for k, v in fields.items())
    return f"{name} = {{ {inner} }}\n"


def test_parses_a_good_set() -> None:
    req_set, problems = parse_set(Path("requirements/ds.toml"), GOOD)
    assert problems == [] and req_set is not None
    assert req_set.description == "Everyday data science" and req_set.r_source == "debian"
    assert [(e.name, e.version, e.line) for e in req_set.python] == [
        ("numpy", "2.4.6", 7),
        ("scikit-learn", "1.9.1", 8),
    ]
    assert req_set.python[1].import_name == "sklearn"
    assert [e.name for e in req_set.r] == ["data.table", "IRkernel", "uuid"]
    assert req_set.r[0].line == 11  # dotted bare key keeps its line
    assert [e.name for e in req_set.apt] == ["libpq5", "libstdc++6"]


def test_shipped_sets_are_valid() -> None:
    sets = load_sets(REPO_ROOT / "requirements")
    assert {s.name for s in sets} >= {"base", "datascience", "r"}
    ds = next(s for s in sets if s.name == "datascience")
    assert {"pandas", "numpy", "pyarrow", "matplotlib", "scikit-learn", "statsmodels"} <= {
        e.name for e in ds.python
    }
    r = next(s for s in sets if s.name == "r")
    assert {"IRkernel", "data.table"} <= {e.name for e in r.r}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "[python]\n" + entry("numpy", ">=2.0"),
            "ds.toml:2: numpy: version '>=2.0' is not an exact pin",
        ),
        ("[python]\n" + entry("numpy", "==2.0"), "is not an exact pin"),
        ("[python]\n" + entry("numpy", "2.*"), "is not an exact pin"),
        ("[python]\n" + entry("numpy", "latest"), "is not an exact pin"),
        ("[python]\n" + entry("Scikit_Learn"), "ds.toml:2: 'Scikit_Learn' is not normalised"),
        ("[python]\n" + entry("numpy", colour="blue"), "unknown field 'colour' in entry 'numpy'"),
        ("[python]\n" + 'numpy = { version = "1.0", requested_by = "@x" }\n', "missing reason"),
        ("[python]\n" + 'numpy = { version = "1.0", reason = "r" }\n', "missing requested_by"),
        ("[python]\n" + 'numpy = { reason = "r", requested_by = "@x" }\n', "missing version"),
        ("[python]\n" + 'numpy = "1.0"\n', "must be an inline table"),
        ("[python]\n" + entry("pandas") + entry("numpy"), "ds.toml:3: [python] is not sorted"),
        ("[r]\n" + entry("data.table", "latest"), "is not an exact R version"),
        ("[r]\n" + entry('"9lives"'), "is not a valid R package name"),
        ("[apt]\n" + entry("LibPQ"), "is not a valid Debian package name"),
        ("[apt]\n" + entry("libpq5", "fifteen"), "is not a Debian version"),
        (
            "[apt]\n" + entry("libpq5", import_="x").replace("import_", "import"),
            "'import' is only for Python",
        ),
        ("[pip]\n" + entry("numpy"), "unknown table [pip]"),
        ('[set]\ncolour = "x"\n', "unknown key set.colour"),
        ('[set]\nr_source = "conda"\n', "unknown r_source 'conda'"),
        ('[python]\nnumpy = { version = "1.0"\n', "invalid TOML"),
    ],
)
def test_each_rule_reports_file_line_and_hint(text: str, expected: str) -> None:
    problems = problems_of(text)
    assert any(expected in p for p in problems), problems
    assert all("(hint: " in p for p in problems)


def test_broken_toml_names_the_line() -> None:
    (problem,) = problems_of("[python]\n" + entry("numpy") + "pandas = { version = \n")
    assert problem.startswith("requirements/ds.toml:3: invalid TOML")


def test_bad_set_file_name() -> None:
    assert any("set name 'Data Science'" in p for p in problems_of("", name="Data Science"))


def test_all_problems_at_once_across_files(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text("[python]\n" + entry("numpy", ">=1") + entry("Pandas"))
    (tmp_path / "b.toml").write_text("[python]\n" + entry("numpy") + 'zz = { version = "1" }\n')
    with pytest.raises(RequirementsError) as caught:
        load_sets(tmp_path)
    lines = caught.value.detail_lines()
    assert caught.value.exit_code == 4
    assert any(line.startswith(f"{tmp_path}/a.toml:2:") for line in lines)
    assert any(line.startswith(f"{tmp_path}/a.toml:3:") for line in lines)
    assert any(
        line.startswith(f"{tmp_path}/b.toml:3:") and "missing reason" in line for line in lines
    )
    assert caught.value.message == f"{len(lines)} problems in {tmp_path}"


def test_duplicates_across_sets_are_refused(tmp_path: Path) -> None:
    a, _ = parse_set(tmp_path / "a.toml", "[python]\n" + entry("numpy"))
    b, _ = parse_set(
        tmp_path / "b.toml",
        "# more\n[python]\n" + entry("numpy"),
    )
    assert a is not None and b is not None
    (problem,) = check_sets([a, b])
    assert problem.line == 3 and "already in set 'a'" in problem.message


def test_same_name_in_python_and_apt_is_fine(tmp_path: Path) -> None:
    a, _ = parse_set(tmp_path / "a.toml", "[python]\n" + entry("git") + "[apt]\n" + entry("git"))
    assert a is not None and check_sets([a]) == []


def test_normalize() -> None:
    assert normalize("Scikit_Learn") == "scikit-learn"
    assert normalize("zope.interface") == "zope-interface"


# --- imagebot add ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ecosystem", "spec", "expected"),
    [
        ("python", "Scikit_Learn==1.9.1", NewEntry("python", "scikit-learn", "1.9.1")),
        (
            "python",
            "pandas[excel,parquet]==3.1.1",
            NewEntry("python", "pandas", "3.1.1", ("excel", "parquet")),
        ),
        ("r", "data.table==1.14.8", NewEntry("r", "data.table", "1.14.8")),
        ("apt", "libpq5=15.14*", NewEntry("apt", "libpq5", "15.14*")),
        ("apt", "git=1:2.39.5*", NewEntry("apt", "git", "1:2.39.5*")),
    ],
)
def test_parse_add_spec(ecosystem: str, spec: str, expected: NewEntry) -> None:
    assert parse_add_spec(ecosystem, spec) == expected


@pytest.mark.parametrize(
    ("ecosystem", "spec"),
    [
        ("python", "numpy"),
        ("python", "numpy>=2"),
        ("python", "numpy=2.0"),
        ("apt", "libpq5==15"),
        ("r", "data.table[x]==1.0"),
        ("conda", "numpy==1"),
        ("python", "==1.0"),
    ],
)
def test_parse_add_spec_refuses(ecosystem: str, spec: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_add_spec(ecosystem, spec)
    assert caught.value.exit_code == 2 and caught.value.hint


def new(ecosystem: str, name: str, version: str = "1.0") -> NewEntry:
    return NewEntry(ecosystem, name, version, reason="why", requested_by="@me")


def test_insert_in_sorted_position_keeps_every_other_byte() -> None:
    text, line = insert_entry(GOOD, new("python", "pandas", "3.1.1"))
    assert line == 8
    assert (
        text.splitlines()[7]
        == 'pandas = { version = "3.1.1", reason = "why", requested_by = "@me" }'
    )
    assert text.replace(text.splitlines(keepends=True)[7], "", 1) == GOOD


def test_insert_goes_above_the_comment_of_the_next_entry() -> None:
    original = '[python]\nnumpy = { version = "1", reason = "r", requested_by = "@x" }\n# models\nscipy = { version = "1", reason = "r", requested_by = "@x" }\n'
    text, line = insert_entry(original, new("python", "pandas"))
    assert line == 3 and text.splitlines()[3] == "# models"


def test_insert_first_last_and_into_an_empty_table() -> None:
    assert insert_entry(GOOD, new("python", "aaa"))[1] == 7
    assert insert_entry(GOOD, new("python", "zzz"))[1] == 9
    assert insert_entry("[set]\n\n[python]\n\n[r]\n", new("python", "numpy")) == (
        '[set]\n\n[python]\nnumpy = { version = "1.0", reason = "why", requested_by = "@me" }\n\n[r]\n',
        4,
    )


def test_insert_creates_the_table_when_missing() -> None:
    text, line = insert_entry('[set]\ndescription = "x"', new("apt", "libstdc++6", "12*"))
    assert text == (
        '[set]\ndescription = "x"\n\n[apt]\n'
        '"libstdc++6" = { version = "12*", reason = "why", requested_by = "@me" }\n'
    )
    assert line == 5


def test_insert_r_dotted_names_sort_case_insensitively() -> None:
    text, line = insert_entry(GOOD, new("r", "ggplot2", "3.4.1"))
    assert line == 12  # after data.table, before IRkernel
    assert text.splitlines()[11].startswith("ggplot2 = {")


def test_insert_keeps_crlf() -> None:
    original = GOOD.replace("\n", "\r\n")
    text, _ = insert_entry(original, new("python", "pandas"))
    assert "\n" not in text.replace("\r\n", "")


def test_insert_escapes_strings() -> None:
    entry_ = NewEntry(
        "python", "x", "1.0", reason='say "hi" \\ ø', requested_by="@me", import_name="x_y"
    )
    text, _ = insert_entry("[python]\n", entry_)
    req_set, problems = parse_set(Path("requirements/t.toml"), text)
    assert not problems and req_set is not None
    assert req_set.python[0].reason == 'say "hi" \\ ø' and req_set.python[0].import_name == "x_y"


def test_add_entry_validates_and_refuses_duplicates(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text("[python]\n" + entry("numpy"))
    (tmp_path / "b.toml").write_text("# b\n[python]\n")
    added = add_entry(tmp_path, "b", new("python", "pandas", "3.1.1"))
    assert added.line == 3 and added.text.startswith("# b\n[python]\npandas = ")
    with pytest.raises(RequirementsError) as caught:
        add_entry(tmp_path, "b", new("python", "numpy", "2.0"))
    assert "already in set 'a' at version 1.0" in caught.value.detail_lines()[0]
    with pytest.raises(RequirementsError, match="the new entry"):
        add_entry(tmp_path, "b", new("r", "data.table", "newest"))


# --- several vetted versions: "name==version" keys in index-only.toml ------------------------

INDEX_ONLY = """\
[python]
tabulate = { version = "0.9.0", reason = "tables", requested_by = "@anna" }
"tabulate==0.8.10" = { reason = "the 2019 pipeline pins it", requested_by = "@ola" }

[r]
"data.table==1.14.8" = { reason = "tables", requested_by = "@kari" }
R6 = { version = "2.6.1", reason = "classes", requested_by = "@kari" }
"R6==2.5.1" = { reason = "an older project", requested_by = "@kari" }
"""


def test_versioned_keys_give_each_version_its_own_line() -> None:
    parsed, problems = parse_set(Path("requirements/index-only.toml"), INDEX_ONLY)
    assert problems == [] and parsed is not None
    assert [(e.name, e.version, e.line, e.requested_by) for e in parsed.python] == [
        ("tabulate", "0.9.0", 2, "@anna"),
        ("tabulate", "0.8.10", 3, "@ola"),
    ]
    assert [(e.name, e.version) for e in parsed.r] == [
        ("data.table", "1.14.8"),
        ("R6", "2.6.1"),
        ("R6", "2.5.1"),
    ]
    assert index_only_problems(parsed) == []


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('"x==1.0" = { version = "2.0", reason = "r", requested_by = "@x" }',
         "the key says version '1.0', the version field '2.0'"),
        ('"x==" = { reason = "r", requested_by = "@x" }', "missing version"),
        ('"x==1.0; rm" = { reason = "r", requested_by = "@x" }', "is not an exact pin"),
        ('"==1.0" = { reason = "r", requested_by = "@x" }', "is not a valid Python project name"),
    ],
)  # fmt: skip
def test_bad_versioned_keys(line: str, expected: str) -> None:
    problems = problems_of(f"[python]\n{line}\n", name="index-only")
    assert any(expected in p for p in problems), problems


def test_index_only_rules(tmp_path: Path) -> None:
    text = (
        INDEX_ONLY
        + '"R6==2.5.1.0" = { reason = "again", requested_by = "@x" }\n'
        + '\n[apt]\ngit = { version = "1", reason = "r", requested_by = "@x" }\n'
    )
    parsed, problems = parse_set(tmp_path / "index-only.toml", text)
    assert problems == [] and parsed is not None
    (tmp_path / "s.toml").write_text("[python]\n" + entry("tabulate", "0.8.10"))
    found = [p.render() for p in index_only_problems(parsed, load_sets(tmp_path))]
    assert any("apt package 'git' cannot be vetted for self-install" in p for p in found)
    assert any("tabulate==0.8.10 is already vetted in set 's'" in p for p in found)
    assert len(found) == 2  # 2.5.1.0 is another version string: R itself tells them apart


def test_a_set_installs_one_version_of_a_package() -> None:
    text = '[r]\nR6 = { version = "2.6.1", reason = "r", requested_by = "@x" }\n"R6==2.5.1" = { reason = "r", requested_by = "@x" }\n'
    parsed, _ = parse_set(Path("requirements/r.toml"), text)
    assert parsed is not None
    problems = [p.render() for p in check_sets([parsed])]
    assert problems and "is twice in set 'r'" in problems[0] and "index-only.toml" in problems[0]


def test_add_to_index_only_writes_a_versioned_line_for_a_known_name(tmp_path: Path) -> None:
    (tmp_path / "index-only.toml").write_text(INDEX_ONLY)
    (tmp_path / "base.toml").write_text("[python]\n" + entry("numpy"))
    assert add_targets(tmp_path) == ["base", "index-only"]
    more = new("python", "tabulate", "0.8.9")
    added = add_entry(tmp_path, "index-only", more)
    assert added.line == 4
    assert added.text.splitlines()[3] == (
        '"tabulate==0.8.9" = { reason = "why", requested_by = "@me" }'
    )
    fresh = add_entry(tmp_path, "index-only", new("r", "here", "1.0.1"))
    assert 'here = { version = "1.0.1", reason = "why", requested_by = "@me" }' in fresh.text
    with pytest.raises(RequirementsError) as twice:
        add_entry(tmp_path, "index-only", new("python", "tabulate", "0.9.0"))
    assert "python tabulate==0.9.0 is already vetted here" in twice.value.detail_lines()[0]
    with pytest.raises(RequirementsError):
        add_entry(tmp_path, "index-only", new("python", "numpy", "1.0"))
    with pytest.raises(RequirementsError) as caught:
        add_entry(tmp_path, "index-only", new("apt", "git", "1"))
    assert "pods install no system packages" in caught.value.hint
