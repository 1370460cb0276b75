"""yamledit against real-world files (see ../shared/corpus/README.md).

- Flux's own setter fixtures come out byte-identical to Flux's expected files.
- The real before -> after edits in real-diffs/ are reproduced for the fields imagebot sets;
  lines that people changed by hand in the same commit (comments, display names) are listed.
- Every corpus YAML file survives a no-op edit of every image it holds, byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from paths import CORPUS

from imagebot import yamledit
from imagebot.errors import YamlEditError
from imagebot.tags import ImageRef

SETTERS = CORPUS / "flux-setters"
FLUX = "fluxcd__image-automation-controller__internal__update__testdata__"
POLICIES = {
    "automation-ns:policy": "index.repo.fake/updated:v1.0.1",
    "automation-ns:unchanged": "image:v1.0.0",
    "automation-ns:policy-with-digest": "image:v1.0.0@sha256:"
    "6745aaad46d795c9836632e1fb62f24b7e7f4c843144da8e47a5465c411a14be",
}


def read(path: Path) -> str:
    return path.read_bytes().decode("utf-8")


def set_scalars(text: str, values: dict[str, str], origin: str) -> yamledit.EditResult:
    """Set plain scalars by dotted path through yamledit's splice and verify steps.

    A probe of the splice engine on values that are not images (chart versions): imagebot
    itself edits image targets only, so this lives with the corpus tests.
    """
    from ruamel.yaml.nodes import ScalarNode

    parsed = yamledit._parse(text, origin)
    slots = []
    for path, value in values.items():
        with yamledit._duplicates_refused(origin, path):
            found = yamledit._locate(parsed, path, origin)
        if not isinstance(found.node, ScalarNode):
            raise YamlEditError(f"{origin}: {path!r} is not a scalar", "point at a value")
        slots.append(yamledit._Slot(found.node, path, value, found.shared))
    return yamledit._splice(parsed, text, slots, origin)


def setter_originals() -> list[str]:
    if not SETTERS.is_dir():
        return []
    return sorted(p.name for p in SETTERS.glob(f"{FLUX}setters__original__*"))


@pytest.mark.parametrize("name", setter_originals())
def test_flux_setter_fixtures_are_byte_identical(name: str) -> None:
    original = read(SETTERS / name)
    expected_path = SETTERS / name.replace("__original__", "__expected__")
    if not expected_path.exists():
        # Flux leaves these alone (a marker of another namespace, or none): so must we.
        for policy, ref in POLICIES.items():
            with pytest.raises(YamlEditError, match=f"no .*{policy}.* marker"):
                yamledit.set_image(original, f"policy:{policy}", ImageRef.parse(ref))
    expected = read(expected_path) if expected_path.exists() else original
    present = {marker.policy for marker in yamledit.find_policy_markers(original)}

    text = original
    for policy in sorted(present & POLICIES.keys()):
        text = yamledit.set_image(text, f"policy:{policy}", ImageRef.parse(POLICIES[policy])).text

    assert text == expected


def test_flux_replace_keeps_non_ascii_comments() -> None:
    original = read(SETTERS / f"{FLUX}replace__commented__deployment.yaml")
    expected = read(SETTERS / f"{FLUX}replace__commented-expected__deployment.yaml")

    text = yamledit.set_image(
        original, "spec.template.spec.containers.0.image", ImageRef.parse("used:v1.1.0")
    ).text

    assert text == original.replace("used:v1.0.0", "used:v1.1.0")
    # Flux's expected file also re-indents the sequence (old kyaml output); apart from that
    # indentation it is the same file.
    assert [line.strip() for line in text.splitlines()] == [
        line.strip() for line in expected.splitlines()
    ]


@pytest.mark.parametrize("kind", ["deployment.yaml", "cronjob.yaml"])
def test_flux_leave_fixtures_are_left_byte_identical(kind: str) -> None:
    # leave/expected/* are old outputs that re-indent sequences; the right answer is the
    # original, untouched (README).
    original = read(SETTERS / f"{FLUX}leave__original__{kind}")
    path = "spec.template.spec.containers.0.image"
    if kind == "cronjob.yaml":
        path = "spec.jobTemplate.spec.template.spec.containers.0.image"
    ref = yamledit.read_image(original, path)
    assert yamledit.set_image(original, path, ref).text == original


@dataclass(frozen=True)
class RealDiff:
    stem: str
    images: dict[str, str] = field(default_factory=dict)  # target -> new ref
    scalars: dict[str, str] = field(default_factory=dict)  # path -> new value
    by_hand: tuple[str, ...] = ()  # substrings of `after` lines changed by people, not imagebot


Z2JH_RD = "jupyterhub__zero-to-jupyterhub-k8s__jupyterhub__values.295e7d827f"
REAL_DIFFS = [
    RealDiff(
        "2i2c-org__infrastructure__config__clusters__2i2c-uk__staging.values.af8fdb6107",
        {"jupyterhub.singleuser.image": "pangeo/pangeo-notebook:2025.01.24"},
    ),
    RealDiff(
        "2i2c-org__infrastructure__config__clusters__catalystproject-africa__common.values"
        ".daaec7968c",
        {"jupyterhub.singleuser.image": "rocker/binder:4.3"},
        by_hand=("# tags can be viewed at",),
    ),
    RealDiff(
        "2i2c-org__infrastructure__config__clusters__opensci__staging.values.af8fdb6107",
        {
            "jupyterhub.singleuser.profileList.0.profile_options.image.choices.pangeo"
            ".kubespawner_override.image": "pangeo/pangeo-notebook:2025.01.24"
        },
    ),
    RealDiff(
        "JonathanMonster__my-gitops-training__clusters__dev__helm-release-example.1921d71ee6",
        {"policy:management:podinfo": "ghcr.io/stefanprodan/podinfo:6.3.0"},
    ),
    RealDiff(
        "JonathanMonster__my-gitops-training__clusters__dev__helm-release-example.9c10f71977",
        {"policy:management:podinfo": "ghcr.io/stefanprodan/podinfo:6.2.3"},
    ),
    RealDiff(
        "PurdueAF__purdue-af__apps__jupyterhub__jupyterhub__values.ec64dc49cc",
        {
            "singleuser.image": "geddes-registry.rcac.purdue.edu/ghcr-proxy-cache/purdueaf/"
            "purdue-af:0.13.3",
            "singleuser.profileList.0.kubespawner_override.image": "geddes-registry.rcac.purdue"
            ".edu/ghcr-proxy-cache/purdueaf/purdue-af:0.13.3",
        },
        {"singleuser.extraLabels.docker_image_tag": "0.13.3"},
        by_hand=('display_name: "Purdue AF 0.13.3',),
    ),
    RealDiff(
        "berkeley-dsep-infra__datahub__deployments__dlab__hubploy.811ea0948d",
        {
            "images.images.0.name": "us-central1-docker.pkg.dev/ucb-datahub-2018/user-images/"
            "datahub-user-image:34f4eb103e6a"
        },
    ),
    RealDiff(
        "berkeley-dsep-infra__datahub__deployments__template__{{cookiecutter.hub_name}}__hubploy"
        ".811ea0948d",
        {
            "images.images.0.name": "us-central1-docker.pkg.dev/ucb-datahub-2018/user-images/"
            "datahub-user-image:34f4eb103e6a"
        },
    ),
    RealDiff(Z2JH_RD, {"proxy.chp.image": "quay.io/jupyterhub/configurable-http-proxy:5.3.0"}),
    RealDiff(
        "mike-matera__cis-infrastructure__jupyterhub__values.099fadc141",
        {"singleuser.image": "ghcr.io/mike-matera/python-for-everyone:76054b35e10b"},
        by_hand=("gitpuller https://github.com/mike-matera/python-for-everyone release-sp22",),
    ),
    RealDiff(
        "teo__homelab-gitops__kubernetes__apps__jupyterhub__jupyterhub__app__helmrelease"
        ".f512095a06",
        scalars={"spec.chart.spec.version": "4.4.1"},
    ),
    RealDiff(
        "vre-hub__vre__infrastructure__cluster__flux__jhub__jhub-release.527982d0a9",
        {"spec.values.singleuser.image": "ghcr.io/vre-hub/vre-singleuser-py311:sha-4c63968"},
    ),
    RealDiff(
        "vre-hub__vre__infrastructure__cluster__flux__jhub__jhub-release.b570a62eb0",
        {
            "spec.values.singleuser.profileList.4.kubespawner_override.image": "ghcr.io/vre-hub/"
            "vre-singleuser-wdf:sha-57b874e"
        },
    ),
]


@pytest.mark.parametrize("case", REAL_DIFFS, ids=lambda case: case.stem[:60])
def test_real_diffs_are_reproduced(case: RealDiff) -> None:
    folder = CORPUS / "real-diffs"
    before = read(folder / f"{case.stem}.before.yaml")
    after = read(folder / f"{case.stem}.after.yaml")

    text = before
    for target, ref in case.images.items():
        text = yamledit.set_image(text, target, ImageRef.parse(ref), case.stem).text
    if case.scalars:
        text = set_scalars(text, case.scalars, case.stem).text

    assert text != before
    ours, theirs = text.splitlines(keepends=True), after.splitlines(keepends=True)
    assert len(ours) == len(theirs)
    left = [t for o, t in zip(ours, theirs, strict=True) if o != t]
    assert all(any(hand in line for hand in case.by_hand) for line in left), left
    assert len(left) == sum(
        1
        for o, b in zip(before.splitlines(), after.splitlines(), strict=True)
        if o != b and any(h in b for h in case.by_hand)
    )


def test_real_diffs_table_covers_every_pair() -> None:
    stems = {
        p.name.removesuffix(".before.yaml") for p in (CORPUS / "real-diffs").glob("*.before.yaml")
    }
    assert stems == {case.stem for case in REAL_DIFFS}


def corpus_yaml_files() -> list[str]:
    if not CORPUS.is_dir():
        return []
    files = []
    for path in sorted(CORPUS.rglob("*")):
        if (
            path.is_file()
            and path.parent.name != "dockerfiles"
            and path.suffix not in (".md", ".diff")
            and path.name != "LICENSE"
        ):
            files.append(str(path.relative_to(CORPUS)))
    return files


def image_targets(text: str) -> Iterator[str]:
    """Paths of every `image` key (map or string) and every policy, as imagebot targets."""
    from ruamel.yaml import YAML
    from ruamel.yaml.nodes import MappingNode, SequenceNode

    def walk(node: Any, path: list[str]) -> Iterator[str]:
        if isinstance(node, MappingNode):
            for key, value in node.value:
                if key.value == "<<":
                    continue
                child = [*path, str(key.value)]
                if key.value in ("image", "kubespawner_override") or key.value.endswith("Image"):
                    yield ".".join(child)
                yield from walk(value, child)
        elif isinstance(node, SequenceNode):
            for index, item in enumerate(node.value):
                yield from walk(item, [*path, str(index)])

    for doc in YAML().compose_all(yamledit.mask_templates(text)[0]):
        yield from walk(doc, [])
    for policy in {marker.policy for marker in yamledit.find_policy_markers(text)}:
        yield f"policy:{policy}"


PROBE_TAG = "imagebot-probe"


@pytest.mark.parametrize("name", corpus_yaml_files())
def test_every_corpus_file_survives_a_no_op_edit(name: str) -> None:
    """Set each image (and a few other scalars) to another value and back: byte-identical."""
    from imagebot.errors import ImagebotError

    text = read(CORPUS / name)
    for target in list(image_targets(text))[:4]:
        try:
            ref = yamledit.read_image(text, target, name)
            probe = yamledit.set_image(text, target, ref.with_tag(PROBE_TAG), name)
        except ImagebotError:
            continue  # not an image, shared through an anchor, in several documents, ...
        assert yamledit.set_image(text, target, ref, name).text == text
        assert yamledit.set_image(probe.text, target, ref, name).text == text, target
    for path, value in list(scalar_paths(text))[:3]:
        try:
            probe = set_scalars(text, {path: "imagebot-probe"}, name)
        except ImagebotError:
            continue
        assert changed_lines(text, probe.text) == 1
        assert set_scalars(probe.text, {path: value}, name).text == text, path


def changed_lines(old: str, new: str) -> int:
    return sum(a != b for a, b in zip(old.splitlines(), new.splitlines(), strict=True))


def scalar_paths(text: str) -> Iterator[tuple[str, str]]:
    """Dotted paths of one-line scalar values, in document order."""
    from ruamel.yaml import YAML
    from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode

    def walk(node: Any, path: list[str]) -> Iterator[tuple[str, str]]:
        if isinstance(node, ScalarNode):
            one_line = node.start_mark.line == node.end_mark.line
            # Only strings that imagebot would write back in their own style (a plain `a b`
            # is re-written quoted, a plain `true` is not a string).
            writable = node.style in ("'", '"') or not yamledit.needs_quotes(str(node.value))
            if path and one_line and writable and node.tag == yamledit.STR_TAG:
                yield ".".join(path), str(node.value)
        elif isinstance(node, MappingNode):
            for key, value in node.value:
                if isinstance(key, ScalarNode) and "." not in str(key.value):
                    yield from walk(value, [*path, str(key.value)])
        elif isinstance(node, SequenceNode):
            for index, item in enumerate(node.value):
                yield from walk(item, [*path, str(index)])

    for doc in YAML().compose_all(yamledit.mask_templates(text)[0]):
        yield from walk(doc, [])


LEAP = "z2jh-values/2i2c-org__infrastructure__config__clusters__leap__daskhub-common.values.yaml"
LEAP_PANGEO = (
    "basehub.jupyterhub.singleuser.profileList.{}.profile_options.image.choices.pangeo"
    ".kubespawner_override.image"
)


@pytest.mark.parametrize(
    ("name", "target", "error"),
    [
        # profile 2 aliases profile 0's image choices: editing one would edit both.
        (LEAP, LEAP_PANGEO.format(2), "anchor/alias that other places share"),
        (LEAP, LEAP_PANGEO.format(0), "anchor/alias that other places share"),
        # hub.image has deliberately no tag: imagebot never adds keys.
        (
            "z2jh-values/PurdueAF__purdue-af__apps__jupyterhub__jupyterhub__values.yaml",
            "hub.image",
            "without name/repository and tag",
        ),
        # A patch with no image at all, and a HelmRelease without singleuser.image.
        (
            "flux-helmrelease/ska-telescope__ska-uksrc-cluster-gitops__apps__jupyterhub__overlays"
            "__ral__jupyterhub-values.yaml",
            "spec.values.singleuser.image",
            "not found",
        ),
        (
            "flux-helmrelease/jhart99__home-ops__kubernetes__apps__jupyterhub__jupyterhub__app"
            "__helmrelease@17efa954.yaml",
            "spec.values.singleuser.image",
            "not found",
        ),
    ],
)
def test_corpus_refusals_leave_the_file_alone(name: str, target: str, error: str) -> None:
    from imagebot.errors import YamlEditError

    text = read(CORPUS / name)
    with pytest.raises(YamlEditError, match=error):
        yamledit.set_image(text, target, ImageRef.parse("registry.example.org/x:new"), name)


def test_quoted_date_tag_stays_quoted() -> None:
    name = "flux-helmrelease/ska-telescope__ska-uksrc-cluster-gitops__apps__jupyterhub__base__helmrelease.yaml"
    text = read(CORPUS / name)
    assert '"2024-08-05"' in text
    target = next(t for t in image_targets(text) if "2024-08-05" in str(_ref_or_none(text, t)))
    ref = yamledit.read_image(text, target)

    result = yamledit.set_image(text, target, ref.with_tag("2025-01-07"), name)

    assert result.text == text.replace('"2024-08-05"', '"2025-01-07"', 1)


def _ref_or_none(text: str, target: str) -> ImageRef | None:
    from imagebot.errors import ImagebotError

    try:
        return yamledit.read_image(text, target)
    except ImagebotError:
        return None
