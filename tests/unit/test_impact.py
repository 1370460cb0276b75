"""impact: who needs each package (from the locks alone), and who a change hurts, worst first."""

from __future__ import annotations

import pytest
from paths import REPO_ROOT

from imagebot import impact, promote_plan
from imagebot.environments import EnvironmentPin, RegisteredEnvironment
from imagebot.lockfile import LockedPackage, dependency_edges, split_blocks
from imagebot.promote_plan import ImageChange
from imagebot.tags import ImageRef

NUMPY_REQUESTERS = {
    ("numpy", "@platform-team", True),
    ("matplotlib", "@platform-team", False),
    ("pandas", "@platform-team", False),
    ("scipy", "@platform-team", False),
    ("scikit-learn", "@ola.statistiker", False),
    ("statsmodels", "@ola.statistiker", False),
    ("seaborn", "@anna.analytiker", False),
}


def repo_files() -> dict[str, str]:
    """The committed sets, index-only.toml and locks: the default sets, as a state."""
    folder = REPO_ROOT / "requirements"
    return {
        f"requirements/{p.name}": p.read_text(encoding="utf-8")
        for p in folder.iterdir()
        if p.suffix in (".toml", ".lock")
    }


def environment(owner: str, *pins: tuple[str, str], name: str = "survey") -> RegisteredEnvironment:
    listed = tuple(EnvironmentPin(n, v, i) for i, (n, v) in enumerate(pins, start=2))
    return RegisteredEnvironment(f"environments/methods/{name}.txt", "methods", name, owner, listed)


def test_the_locks_give_the_whole_graph_across_layers() -> None:
    state = impact.snapshot(repo_files())
    # pandas (datascience) needs python-dateutil, which an earlier layer installs: only the
    # `# requires:` line of datascience.lock says so.
    assert "python-dateutil" in state.requires["pandas"]
    assert state.layer["python-dateutil"] != "datascience"
    needers = {n.entry.key for n in impact.who_needs(state, "python-dateutil")}
    assert {"pandas", "matplotlib", "statsmodels", "seaborn"} <= needers


def test_requires_is_uv_via_inverted_over_the_whole_resolution() -> None:
    compiled = (
        "a==1 \\\n    --hash=sha256:" + "1" * 64 + "\n    # via -r x.in\n"
        "b==2 \\\n    --hash=sha256:" + "2" * 64 + "\n    # via\n    #   a\n    #   c\n"
        "c==3 \\\n    --hash=sha256:" + "3" * 64 + "\n    # via a\n"
    )
    blocks = split_blocks(compiled)
    edges = dependency_edges(blocks)
    assert edges == {"a": frozenset({"b", "c"}), "c": frozenset({"b"})}
    with_line = blocks[0].with_requires(["c", "b"])
    assert with_line.text.endswith("    # via -r x.in\n    # requires: b, c\n")
    assert with_line.requires == ("b", "c")
    assert with_line.with_requires([]).text == blocks[0].text
    assert LockedPackage("b", "2", blocks[1].text).via == ("a", "c")


def test_a_minor_numpy_bump_names_every_requester_and_the_environment_on_the_old_numpy() -> None:
    state = impact.snapshot(repo_files())
    old_numpy = state.pins["numpy"]
    bumped = {**state.pins, "numpy": "2.5.0"}
    survey = environment("@kari.nordmann", ("numpy", old_numpy), ("pandas", "3.1.1"))

    result = impact.assess(state.pins, bumped, state, environments=[survey])

    (numpy,) = result.packages
    assert (numpy.name, numpy.old, numpy.new, numpy.kind) == ("numpy", old_numpy, "2.5.0", "minor")
    assert {(n.entry.key, n.entry.requested_by, n.direct) for n in numpy.needs} == NUMPY_REQUESTERS
    assert numpy.needs[0].direct  # direct requesters first
    assert [(a.owner, a.pinned, a.status) for a in numpy.environments] == [
        ("@kari.nordmann", old_numpy, "works")
    ]
    text = impact.render_text(result)
    assert text.splitlines()[:3] == [
        f"numpy {old_numpy} -> 2.5.0: minor",
        "  owner @kari.nordmann of methods/survey (environments/methods/survey.txt:2) pins "
        f"numpy=={old_numpy}: works: {old_numpy} is still served, but differs from the image's 2.5.0",
        f"  requested by @platform-team: numpy=={old_numpy} in datascience (arrays)",
    ]
    for requester in ("@ola.statistiker", "@anna.analytiker"):
        assert requester in text


def test_removing_a_package_that_an_environment_pins_breaks_it() -> None:
    files = repo_files()
    state = impact.snapshot(files)
    toml = files["requirements/datascience.toml"]
    files["requirements/datascience.toml"] = "".join(
        line for line in toml.splitlines(keepends=True) if not line.startswith("openpyxl")
    )
    lock = files["requirements/datascience.lock"]
    files["requirements/datascience.lock"] = "".join(
        b.text for b in split_blocks(lock) if b.name not in ("openpyxl", "et-xmlfile")
    )
    after = impact.snapshot(files)
    reports = environment("@stats/reporting", ("openpyxl", "3.1.5"), ("numpy", "2.4.6"))

    result = impact.assess(state.pins, after.pins, after, state, [reports])

    assert [(p.name, p.kind) for p in result.packages] == [
        ("openpyxl", "removal"),
        ("et-xmlfile", "removal"),
    ]
    openpyxl = result.packages[0]
    assert [(a.status, a.blocked) for a in openpyxl.environments] == [("breaks", False)]
    assert [(n.entry.requested_by, n.direct) for n in openpyxl.needs] == [("@kari.nordmann", True)]
    assert result.owners_who_must_move == ("@stats/reporting",)
    lines = impact.render_text(result).splitlines()
    assert lines[0] == "must move: @stats/reporting"
    assert lines[1] == "openpyxl 3.1.5 -> (removed): removal"
    assert "breaks: 3.1.5 is no longer served by the index; @stats/reporting must move" in lines[2]


def test_an_advisory_that_blocks_a_pinned_version_names_the_owner_who_must_move() -> None:
    state = impact.snapshot(repo_files())
    bumped = {**state.pins, "pandas": "3.1.2"}
    survey = environment("@kari.nordmann", ("pandas", "3.1.1"))

    result = impact.assess(
        state.pins, bumped, state, environments=[survey], blocked={("pandas", "3.1.1")}
    )

    (affected,) = result.packages[0].environments
    assert (affected.status, affected.blocked) == ("breaks", True)
    assert "breaks: 3.1.1 is blocked by an unwaived advisory; @kari.nordmann must move" in (
        impact.render_text(result)
    )


def test_harm_orders_breaking_then_removal_major_downgrade_minor_patch() -> None:
    state = impact.snapshot(repo_files())
    pins = state.pins
    new = {
        **pins,
        "cycler": "0.12.2",  # patch
        "numpy": "2.5.0",  # minor
        "scipy": "1.16.0",  # downgrade
        "pandas": "4.0.0",  # major
        "narwhals": "2.30.0",  # minor, but an environment's pin of it breaks
    }
    del new["wrapt"]  # removal
    broken = environment("@team/x", ("narwhals", "2.0.0"), name="old")

    result = impact.assess(pins, new, state, environments=[broken], served=frozenset())

    assert [p.name for p in result.packages] == [
        "narwhals",
        "wrapt",
        "pandas",
        "scipy",
        "numpy",
        "cycler",
    ]


@pytest.mark.parametrize(
    ("old", "new", "kind"),
    [
        ("2.4.6", "2.4.7", "patch"),
        ("2.4.6", "2.5.0", "minor"),
        ("2.4.6", "3.0", "major"),
        ("2.4.6", "2.4.5", "downgrade"),
        ("2.4.6", None, "removal"),
        ("1.0", "1!0.5", "major"),  # an epoch outranks any release
        ("2.4.6", "2.4.6.post1", "patch"),
        ("2024.1", "2024.1.1", "patch"),
        ("weird", "2.0", "change"),
    ],
)
def test_change_kind(old: str, new: str | None, kind: str) -> None:
    assert impact.change_kind(old, new) == kind


def test_unchanged_and_added_packages_are_not_reported() -> None:
    state = impact.snapshot(repo_files())
    result = impact.assess(state.pins, {**state.pins, "polars": "1.0.0"}, state)
    assert result.packages == ()
    assert impact.render_text(result) == impact.NOTHING + "\n"


def test_package_report_for_a_version_the_image_would_move_to() -> None:
    state = impact.snapshot(repo_files())
    survey = environment("@kari.nordmann", ("numpy", "2.4.6"))
    now = impact.package_report("NumPy", None, state, [survey])
    moved = impact.package_report("numpy", "3.0.0", state, [survey])
    assert (now.kind, [a.status for a in now.environments]) == ("none", ["matches"])
    assert (moved.kind, [a.status for a in moved.environments]) == ("major", ["works"])
    assert {n.entry.key for n in moved.needs} == {k for k, _, _ in NUMPY_REQUESTERS}


def test_index_only_entries_need_their_own_package() -> None:
    state = impact.snapshot(repo_files())
    (need,) = impact.who_needs(state, "tabulate")
    assert (need.entry.set, need.direct) == ("index-only", True)


def test_the_promotion_commit_message_whole() -> None:
    state = impact.snapshot(repo_files())
    old_pins = dict(state.pins)
    new_pins = {**old_pins, "numpy": "2.5.0"}
    survey = environment("@kari.nordmann", ("numpy", "2.4.6"))
    section = impact.render_text(
        impact.assess(old_pins, new_pins, state, environments=[survey]), limit=1
    )
    diff = (
        "packages: r/lab:1 -> r/lab:2\n"
        "python: 0 added, 0 removed, 1 changed\n"
        "  ~ numpy 2.4.6 -> 2.5.0\n"
        "r: no changes\n"
        "dpkg: no changes\n"
    )
    old, new = ImageRef.parse("r/lab:1"), ImageRef.parse("r/lab:2")
    change = ImageChange("jupyterlab", "spec.values.singleuser.image", old, new)

    message = promote_plan.commit_message(
        "promote",
        "staging",
        [change],
        {(str(old), str(new)): promote_plan.with_impact(diff, section)},
        "abc123",
    )

    assert message == (
        "imagebot: promote jupyterlab in staging [skip ci]\n"
        "\n"
        "jupyterlab (spec.values.singleuser.image):\n"
        "  r/lab:1\n"
        "  -> r/lab:2\n"
        "\n"
        "Package diff for jupyterlab:\n"
        "packages: r/lab:1 -> r/lab:2\n"
        "python: 0 added, 0 removed, 1 changed\n"
        "  ~ numpy 2.4.6 -> 2.5.0\n"
        "r: no changes\n"
        "dpkg: no changes\n"
        "\n"
        "Who this may hurt:\n"
        "numpy 2.4.6 -> 2.5.0: minor\n"
        "  owner @kari.nordmann of methods/survey (environments/methods/survey.txt:2) pins "
        "numpy==2.4.6: works: 2.4.6 is still served, but differs from the image's 2.5.0\n"
        "  requested by @platform-team: numpy==2.4.6 in datascience (arrays)\n"
        "  needed by @anna.analytiker: seaborn==0.13.2 in datascience (statistical plots): "
        "seaborn -> numpy\n"
        "  needed by @ola.statistiker: scikit-learn==1.9.1 in datascience (models and "
        "preprocessing): scikit-learn -> numpy\n"
        "  needed by @ola.statistiker: statsmodels==0.15.0 in datascience (regression and time "
        "series models): statsmodels -> numpy\n"
        "  needed by @platform-team: matplotlib==3.11.2 in datascience (plots): matplotlib -> numpy\n"
        "  needed by @platform-team: pandas==3.1.1 in datascience (data frames): pandas -> numpy\n"
        "  needed by @platform-team: scipy==1.17.1 in datascience (statistical tests and "
        "optimisation): scipy -> numpy\n"
        "\n"
        "Source revision: abc123\n"
    )


def test_promotion_impact_reads_both_images_and_never_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from imagebot import manifest
    from imagebot.config import load_config

    config = load_config(REPO_ROOT / "imagebot.toml", None, {})
    listings = {
        "r/lab:1": {"python": {"numpy": "2.4.6", "NumPy-Extra": "1.0"}},
        "r/lab:2": {"python": {"numpy": "2.5.0"}},
    }

    def read(config: object, image: str, *, env: object = None) -> manifest.ImagePackages:
        return manifest.ImagePackages.from_listing(image, listings[image])

    monkeypatch.setattr(manifest, "read_manifest", read)
    text = impact.promotion_impact(config, "r/lab:1", "r/lab:2", {})
    assert text.startswith("numpy 2.4.6 -> 2.5.0: minor\n")
    assert "numpy-extra 1.0 -> (removed): removal" in text
    assert "@kari.nordmann" in text  # environments/methods/survey-2024.txt pins numpy 2.4.6

    def broken(config: object, image: str, *, env: object = None) -> manifest.ImagePackages:
        raise RuntimeError("engine gone")

    monkeypatch.setattr(manifest, "read_manifest", broken)
    assert impact.promotion_impact(config, "r/lab:1", "r/lab:2", {}) == (
        "impact unavailable: RuntimeError\n"
    )


def test_impact_takes_the_fast_path_and_imports_no_heavy_library() -> None:
    import json
    import subprocess
    import sys

    heavy = ("typer", "docker", "git", "ruamel", "tomlkit", "rich", "uv", "pydantic")
    code = (
        "import sys\nfrom imagebot.main import main\n"
        "try:\n    main(['impact', 'numpy==2.5.0', '--json'])\nexcept SystemExit:\n    pass\n"
        f"print(__import__('json').dumps([m for m in {heavy!r} if m in sys.modules]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    report, _, loaded = done.stdout.rpartition("\n[")
    assert json.loads("[" + loaded) == []
    assert json.loads(report)["kind"] == "minor"


def test_review_section_of_a_pull_request_that_bumps_numpy() -> None:
    base = repo_files()
    head = dict(base)
    head["requirements/datascience.toml"] = base["requirements/datascience.toml"].replace(
        'numpy = { version = "2.4.6"', 'numpy = { version = "2.5.0"'
    )
    head["requirements/datascience.lock"] = base["requirements/datascience.lock"].replace(
        "numpy==2.4.6", "numpy==2.5.0"
    )
    survey = environment("@kari.nordmann", ("numpy", "2.4.6"))

    result = impact.section(base, head, "requirements", [survey])

    assert (result.old, result.new) == ("base", "head")
    (numpy,) = result.packages
    assert (numpy.old, numpy.new, numpy.kind) == ("2.4.6", "2.5.0", "minor")
    assert {(n.entry.key, n.entry.requested_by) for n in numpy.needs} == {
        (k, r) for k, r, _ in NUMPY_REQUESTERS
    }
    assert numpy.environments[0].status == "works"
