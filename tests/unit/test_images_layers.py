"""Package layers: planning, grouping, deterministic tars, the assembled manifest (all pure)."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path
from types import SimpleNamespace

from paths import REPO_ROOT

from imagebot import layers
from imagebot.assemble import is_assembled, pip_index_url, split_archive
from imagebot.engine import BuildRequest, build_command
from imagebot.layers import Entry, Layer, WantedPackage

ON = "sha256:base /opt/venv"


def pkg(name: str, version: str = "1.0", set_name: str = "s") -> WantedPackage:
    return WantedPackage(
        set_name, name, version, frozenset({f"sha256:{name}{version}"}), f"{name}=={version}\n"
    )


def layer_of(*packages: WantedPackage, digest: str = "") -> Layer:
    keys = tuple(p.key(ON) for p in packages)
    return Layer(digest or f"sha256:{'-'.join(keys)}", "sha256:diff", 10, keys)


# --- keys and plans ---------------------------------------------------------------------------


def test_a_key_names_the_package_and_covers_wheel_and_venv() -> None:
    key = pkg("six").key(ON)
    assert key.startswith("six==1.0@")
    assert pkg("six").key("sha256:other /opt/venv") != key
    other_hash = WantedPackage("s", "six", "1.0", frozenset({"sha256:x"}), "")
    assert other_hash.key(ON) != key
    assert pkg("six", set_name="other").key(ON) == key  # the set does not change the files


def test_a_key_covers_the_pip_that_installs_it() -> None:
    bundled = pkg("six")
    by_pip26 = WantedPackage("s", "six", "1.0", bundled.hashes, bundled.requirement, "pip==26.3")
    assert by_pip26.key(ON) != bundled.key(ON)
    assert bundled.key(ON) == WantedPackage("s", "six", "1.0", bundled.hashes, "", "").key(ON)


def test_later_sets_are_installed_by_the_pip_an_earlier_set_locks(tmp_path: Path) -> None:
    from imagebot.assemble import wanted_packages

    blocks = {
        "first": "six==1.16.0 \\\n    --hash=sha256:" + "1" * 64 + "\n",
        "second": "pip==26.3 \\\n    --hash=sha256:"
        + "2" * 64
        + "\n"
        + "tabulate==0.9.0 \\\n    --hash=sha256:"
        + "3" * 64
        + "\n",
        "third": "idna==3.10 \\\n    --hash=sha256:" + "4" * 64 + "\n",
    }
    (tmp_path / "requirements").mkdir()
    for name, body in blocks.items():
        header = "# inputs: sha256:" + "0" * 64 + "\n"
        (tmp_path / "requirements" / f"{name}.lock").write_text(header + body)
    image = SimpleNamespace(sets=("first", "second", "third"))
    config = SimpleNamespace(requirements_dir=tmp_path / "requirements", image=lambda _: image)
    wanted = wanted_packages(config, "lab")  # type: ignore[arg-type]
    assert [(p.name, p.installer) for p in wanted] == [
        ("six", ""),
        ("pip", ""),  # the venv's own pip installs the set that upgrades it
        ("tabulate", ""),
        ("idna", "pip==26.3"),
    ]


def test_plan_reuses_every_layer_whose_packages_are_all_wanted() -> None:
    a, b, c, d = pkg("a"), pkg("b"), pkg("c"), pkg("d")
    previous = [layer_of(a), layer_of(b, c), layer_of(d)]
    plan = layers.plan([a, b, c, d], ON, previous, frame=5)
    assert plan.reused == tuple(previous) and plan.install == ()


def test_a_bumped_package_breaks_only_its_own_layer() -> None:
    a, b, c, d = pkg("a"), pkg("b"), pkg("c"), pkg("d")
    previous = [layer_of(a), layer_of(b, c), layer_of(d)]
    plan = layers.plan([a, pkg("b", "2.0"), c, d], ON, previous, frame=5)
    assert plan.reused == (previous[0], previous[2])
    assert [p.name for p in plan.install] == ["b", "c"]  # c shared b's small group
    added = layers.plan([a, b, c, d, pkg("e")], ON, previous, frame=5)
    assert added.reused == tuple(previous) and [p.name for p in added.install] == ["e"]
    removed = layers.plan([a, b, c], ON, previous, frame=5)
    assert removed.reused == tuple(previous[:2]) and removed.install == ()


def test_a_new_base_reinstalls_everything() -> None:
    a = pkg("a")
    plan = layers.plan([a], "sha256:newbase /opt/venv", [layer_of(a)], frame=5)
    assert plan.reused == () and plan.install == (a,)


def test_too_many_layers_repack_from_scratch() -> None:
    wanted = [pkg(f"p{i}") for i in range(10)]
    previous = [layer_of(p) for p in wanted[:5]]
    plan = layers.plan(wanted, ON, previous, frame=layers.MAX_LAYERS - 8)
    assert plan.reused == () and plan.install == tuple(wanted)


def test_previous_layers_reads_keys_and_skips_frame_layers() -> None:
    mine = layer_of(pkg("a"), pkg("b"))
    manifest = {
        "layers": [
            {"digest": "sha256:frame", "size": 5},
            {"digest": "sha256:odd", "size": 5, "annotations": {layers.PACKAGES_ANNOTATION: "x"}},
            mine.descriptor(),
        ]
    }
    assert layers.previous_layers(manifest) == [mine]


def test_group_puts_big_packages_alone_and_bounds_small_groups() -> None:
    big, small = layers.BIG_PACKAGE, layers.SMALL_GROUP // 3
    sizes = [("a", 10), ("numpy", big), ("b", small), ("c", small), ("d", small), ("e", 10)]
    assert layers.group(sizes) == [["numpy"], ["a", "b", "c"], ["d", "e"]]
    assert layers.group([]) == []


# --- deterministic layers -------------------------------------------------------------------


def entries() -> list[Entry]:
    return [
        Entry("opt/venv/lib/site/b.py", "file", 0o644, b"b"),
        Entry("opt/venv/bin/tool", "file", 0o755, b"#!/opt/venv/bin/python\n"),
        Entry("opt/venv/lib/site/a.py", "file", 0o644, b"a"),
        Entry("opt/venv/lib/site/link", "symlink", 0o777, target="a.py"),
    ]


def test_a_layer_is_the_same_bytes_whatever_the_order() -> None:
    modes = {"opt": 0o755, "opt/venv": 0o755, "opt/venv/lib": 0o700}
    one = layers.layer_blob(layers.with_parents(entries(), modes))
    two = layers.layer_blob(layers.with_parents(list(reversed(entries())), modes))
    assert one == two
    assert one.digest != one.diff_id and one.digest.startswith("sha256:")
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(one.data))) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == sorted(m.name for m in members)
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, 0, "", "")}
    by_name = {m.name: m for m in members}
    assert by_name["opt/venv/lib"].isdir() and by_name["opt/venv/lib"].mode == 0o700
    assert by_name["opt/venv/lib/site"].mode == 0o755  # no mode known: 0755
    assert by_name["opt/venv/bin/tool"].mode == 0o755
    assert by_name["opt/venv/lib/site/link"].linkname == "a.py"
    assert gzip.decompress(one.data)  # a plain gzip stream
    assert one.data[4:8] == b"\0\0\0\0"  # no time in the gzip header


def test_a_whiteout_hides_one_path() -> None:
    assert layers.whiteout("/opt/venv/lib/x/y.py").path == "opt/venv/lib/x/.wh.y.py"


def test_split_archive_gives_each_package_its_files() -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in (("venv/lib/a.py", b"A"), ("venv/lib/b.py", b"B"), ("venv/x", b"X")):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o640
            tar.addfile(info, io.BytesIO(data))
        folder = tarfile.TarInfo("venv/lib")
        folder.type, folder.mode = tarfile.DIRTYPE, 0o750
        tar.addfile(folder)
    owners = {"a": ["/opt/venv/lib/a.py"], "b": ["/opt/venv/lib/b.py", "/opt/venv/lib/gone.pyc"]}
    payloads, modes = split_archive(raw.getvalue(), owners, "/opt/venv")
    assert payloads == {
        "a": [Entry("opt/venv/lib/a.py", "file", 0o640, b"A")],
        "b": [Entry("opt/venv/lib/b.py", "file", 0o640, b"B")],
    }
    assert modes == {"opt/venv/lib": 0o750}


# --- the assembled image --------------------------------------------------------------------


def test_assemble_appends_layers_history_and_labels_to_the_frame() -> None:
    frame = layers.Frame(
        {
            "mediaType": layers.DOCKER_MANIFEST_MEDIA_TYPE,
            "layers": [
                {"mediaType": layers.DOCKER_LAYER_MEDIA_TYPE, "digest": "sha256:f", "size": 1}
            ],
        },
        {
            "rootfs": {"type": "layers", "diff_ids": ["sha256:fd"]},
            "history": [{"created_by": "apt"}],
            "config": {"User": "1000:100", "Labels": {"a": "1"}},
        },
        layers.DOCKER_MANIFEST_MEDIA_TYPE,
    )
    layer = Layer("sha256:l", "sha256:ld", 7, ("six==1.0@k",))
    result = layers.assemble(frame, [layer], {"b": "2"}, "2026-01-01T00:00:00Z")
    config = json.loads(result.config)
    assert config["rootfs"]["diff_ids"] == ["sha256:fd", "sha256:ld"]
    assert config["config"] == {"User": "1000:100", "Labels": {"a": "1", "b": "2"}}
    assert config["history"][-1]["created_by"] == "imagebot: python packages six==1.0@k"
    manifest = json.loads(result.manifest)
    assert manifest["config"]["digest"] == result.config_digest
    assert [x["digest"] for x in manifest["layers"]] == ["sha256:f", "sha256:l"]
    assert manifest["layers"][1]["mediaType"] == layers.DOCKER_LAYER_MEDIA_TYPE
    assert layers.previous_layers(manifest) == [layer]
    again = layers.assemble(frame, [layer], {"b": "2"}, "2026-01-01T00:00:00Z")
    assert again == result


def test_only_rendered_dockerfiles_are_assembled() -> None:
    assert is_assembled((REPO_ROOT / "jupyter" / "Dockerfile").read_text())
    small = REPO_ROOT / "tests" / "integration" / "fixtures" / "small" / "Dockerfile"
    assert not is_assembled(small.read_text())
    assert not is_assembled("FROM x AS system\nRUN true\n")


def test_the_installer_downloads_where_the_packages_stage_does() -> None:
    text = "FROM x AS system\nFROM system\nARG PIP_INDEX_URL=https://mirror.example/simple\n"
    assert pip_index_url(text, {}) == "https://mirror.example/simple"
    assert pip_index_url(text, {"PIP_INDEX_URL": "https://ci/simple"}) == "https://ci/simple"
    assert pip_index_url("FROM x\n", {}) == "https://pypi.org/simple"


def test_build_command_names_the_target_stage() -> None:
    request = BuildRequest(Path("/ctx"), Path("/ctx/Dockerfile"), ("r/x:system",), target="system")
    argv = build_command("docker", request)
    assert argv[argv.index("--target") + 1] == "system" and argv[-1] == "/ctx"


def test_an_index_s_linux_amd64_image_is_the_frame() -> None:
    from imagebot.assemble import _image_entry

    entries = [
        {"digest": "sha256:arm", "platform": {"os": "linux", "architecture": "arm64"}},
        {
            "digest": "sha256:att",
            "platform": {"os": "unknown", "architecture": "unknown"},
            "annotations": {"vnd.docker.reference.type": "attestation-manifest"},
        },
        {"digest": "sha256:amd", "platform": {"os": "linux", "architecture": "amd64"}},
    ]
    assert _image_entry(entries) == "sha256:amd"
    assert _image_entry(entries[:2]) is None


def test_an_upgrade_s_whiteouts_travel_in_the_upgraded_package_s_layer() -> None:
    """pip's whiteouts of the venv's pip 23.0.1 go into pip's layer, not the first one, so a
    later rebuild of the first layer (which reinstalls no pip) cannot bring 23.0.1 back."""
    from imagebot.assemble import _upload_layers

    class Registry:
        def __init__(self) -> None:
            self.blobs: dict[str, bytes] = {}

        def upload_blob(self, repository: str, digest: str, data: bytes) -> bool:
            self.blobs[digest] = data
            return True

    site = "opt/venv/lib/python3.11/site-packages"
    big = b"x" * layers.BIG_PACKAGE
    payloads = {
        "alembic": [Entry(f"{site}/alembic/__init__.py", "file", data=big)],
        "pip": [Entry(f"{site}/pip/__init__.py", "file", data=big)],
    }
    removed = {
        "pip": [layers.whiteout(f"/{site}/pip-23.0.1.dist-info")],
        "": [layers.whiteout(f"/{site}/stray.txt")],
    }
    registry = Registry()
    made, _ = _upload_layers(
        registry,  # type: ignore[arg-type]
        "j/lab",
        [pkg("alembic"), pkg("pip", "26.3")],
        ON,
        payloads,
        {},
        removed,
    )

    def names(layer: Layer) -> list[str]:
        data = gzip.decompress(registry.blobs[layer.digest])
        return tarfile.open(fileobj=io.BytesIO(data)).getnames()

    first, second = made
    assert f"{site}/.wh.stray.txt" in names(first)
    assert f"{site}/.wh.pip-23.0.1.dist-info" not in names(first)
    assert f"{site}/.wh.pip-23.0.1.dist-info" in names(second)
    assert f"{site}/pip/__init__.py" in names(second)
