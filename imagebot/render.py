"""PURE: config + requirement sets + locks -> the text of jupyter/Dockerfile.

`render_dockerfile(spec)` is a pure function of a `DockerfileSpec`, so re-rendering gives
byte-identical output and golden files pin it down. The text never depends on the config
profile or the environment: the local stack passes its base image and index URL as build
args (`BASE_IMAGE`, `IMAGEBOT_INDEX_URL`), whose defaults here are the production values.

Two stages. `system`: base image, system packages (apt entries of every set, plus r-base-core
when a set has R packages), the venv, each set's R packages in set order, the R kernel, the
index configuration and the user. Then one layer per set installs its lock into the venv.
`imagebot build` builds only the `system` stage and lays the locked Python packages on it at
the registry, each package (or group of small ones) in a deterministic layer of its own
(`imagebot.layers`); a plain `docker build` of the file gives the same files in per-set layers.
The BuildKit secrets `ca-certificates` (a CA bundle) and `netrc` (index credentials) are
mounted only into the RUNs that download; nothing secret lands in ENV, ARG or a layer.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from imagebot import validate
from imagebot.config import Config, ImageConfig
from imagebot.errors import ConfigError, ImagebotError, StaleError
from imagebot.lockfile import lock_path, parse_lock
from imagebot.requirements import Requirement, RequirementSet

VENV = "/opt/venv"
USER_SITE_MODULE = "imagebot/incontainer/user_site.py"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
LOCK_MOUNT_DIR = "/tmp/imagebot"
NB_UID = 1000
NB_GID = 100  # Debian's `users` group, as in the Jupyter docker-stacks images
SYSTEM_STAGE = "system"  # the stage `imagebot build` builds; the Python packages go on top
# pip writes hash-checked .pyc files when it is set: the same bytes on every build. Also the
# mtime of every entry of the package layers (imagebot.layers).
SOURCE_DATE_EPOCH = 0
# A build-context path in a --mount option: no ',' '=' or whitespace, which would split it.
_MOUNT_PATH = re.compile(r"[A-Za-z0-9._/-]+", re.ASCII)

CA_SECRET = f"--mount=type=secret,id=ca-certificates,target={CA_BUNDLE},required=false"
NETRC_SECRET = "--mount=type=secret,id=netrc,target=/root/.netrc,required=false"
# pip trusts certifi, not the system bundle: point it (and everything else) at the mounted one.
CA_ENV = f"PIP_CERT={CA_BUNDLE} SSL_CERT_FILE={CA_BUNDLE} \\\n    REQUESTS_CA_BUNDLE={CA_BUNDLE}"


@dataclass(frozen=True)
class SetLayer:
    set: RequirementSet
    lock_file: str | None  # build-context path of the set's lock; None when it adds no packages


@dataclass(frozen=True)
class DockerfileSpec:
    image: str
    base: str
    source: str  # repository URL for org.opencontainers.image.source
    index_url: str | None  # the vetted package index pods use; None: leave pip's default
    request_url: str  # where users ask for a package
    r_repo: str | None  # CRAN-like repository for sets with r_source = "cran"
    layers: tuple[SetLayer, ...]
    config_file: str = "imagebot.toml"


def render_dockerfile(spec: DockerfileSpec) -> str:
    """The whole Dockerfile. Raises ConfigError when the spec cannot be rendered safely."""
    _validate(spec)
    sections = [
        _header(spec),
        _base(spec),
        _system_packages(spec),
        _venv(),
        *(_r_layer(spec, layer, i + 1) for i, layer in enumerate(spec.layers)),
        _r_kernel(spec),
        _index_config(spec),
        _r_site(spec),
        _user_and_cmd(),
        _packages_stage(),
        *(_python_layer(layer, i + 1) for i, layer in enumerate(spec.layers)),
        f"# Last: every installed distribution's requirements are met.\nUSER {NB_UID}:{NB_GID}\n"
        "RUN python -m pip check\n",
    ]
    return "\n".join(section for section in sections if section)


def check_rendered(path: str, committed: str | None, rendered: str) -> None:
    """Raise StaleError with a unified diff when the committed file differs."""
    if committed == rendered:
        return
    import difflib

    diff = "".join(
        difflib.unified_diff(
            (committed or "").splitlines(keepends=True),
            rendered.splitlines(keepends=True),
            fromfile=f"{path} (committed)",
            tofile=f"{path} (rendered)",
        )
    )
    what = "is missing" if committed is None else "is stale"
    raise StaleError(f"{path} {what}", "run `imagebot render` and commit the result", diff)


# --- sections -------------------------------------------------------------------------------


def _validate(spec: DockerfileSpec) -> None:
    """Refuse a spec that could change the Dockerfile's shape (config and sets checked it too)."""
    for key, url in (
        ("index.url", spec.index_url),
        ("r_repo", spec.r_repo),
        ("project.source", spec.source or None),
        ("index.request_url", spec.request_url or None),
    ):
        if url is not None:
            try:
                validate.url(url)
            except validate.InvalidValue:
                raise ConfigError(
                    f"{spec.config_file}: {key} {url!r} is not a plain URL",
                    "write an http(s) URL without spaces, quotes or $",
                ) from None
    require_r_repo(spec.config_file, spec.image, spec.r_repo, (layer.set for layer in spec.layers))
    for layer in spec.layers:
        if layer.lock_file is not None and not _MOUNT_PATH.fullmatch(layer.lock_file):
            raise ConfigError(
                f"{spec.config_file}: lock path {layer.lock_file!r} cannot be mounted",
                "use a requirements directory whose path has no spaces, ',' or '='",
            )
    for value in _spec_text(spec):
        if not value.isprintable():
            raise ImagebotError(
                f"refusing to render {value!r}: it is not one line of printable text",
                "this is a bug in imagebot's validation; please report it",
            )


def _spec_text(spec: DockerfileSpec) -> Iterable[str]:
    """Every string of the spec that the Dockerfile contains."""
    yield from (spec.image, spec.base, spec.source, spec.request_url, spec.config_file)
    yield from (value for value in (spec.index_url, spec.r_repo) if value is not None)
    for layer in spec.layers:
        yield from (layer.set.name, layer.set.description, layer.lock_file or "")
        for entry in layer.set.all_entries():
            yield from (entry.name, entry.version)


def require_r_repo(
    config_file: str, image: str, r_repo: str | None, sets: Iterable[RequirementSet]
) -> None:
    """A rendered image with a set whose R packages come from CRAN needs r_repo."""
    cran = [s.name for s in sets if s.r and s.r_source == "cran"]
    if cran and not r_repo:
        raise ConfigError(
            f"{config_file}: images.{image}.r_repo is missing, "
            f'but set {cran[0]!r} has r_source = "cran"',
            'set r_repo, e.g. "https://packagemanager.posit.co/cran/__linux__/bookworm/2025-11-20"',
        )


def _any_r(spec: DockerfileSpec, source: str | None = None) -> bool:
    return any(
        layer.set.r and (source is None or layer.set.r_source == source) for layer in spec.layers
    )


def _header(spec: DockerfileSpec) -> str:
    names = ", ".join(layer.set.name for layer in spec.layers)
    return (
        "# GENERATED FILE: do not edit. Regenerate with `imagebot render`;\n"
        "# CI fails when it is stale (`imagebot render --check`).\n"
        f"# Sources: {spec.config_file} (image {spec.image!r}), requirements/*.toml and *.lock.\n"
        f"# Sets, in layer order: {names}.\n"
        f"# `imagebot build` builds the {SYSTEM_STAGE!r} stage and adds the Python packages at the\n"
        '# registry, a deterministic layer per package or group (docs/images.md, "Layers").\n'
        "# Built as is, with BuildKit from the repository root, it gives the same files, e.g.\n"
        f"#   DOCKER_BUILDKIT=1 docker build -f <this file> \\\n"
        f"#     --secret id=ca-certificates,src={CA_BUNDLE} .\n"
        "# Optional secret `netrc` carries index credentials; neither lands in a layer.\n"
    )


def _base(spec: DockerfileSpec) -> str:
    description = (
        f"JupyterLab with the requirement sets {', '.join(layer.set.name for layer in spec.layers)}"
    )
    labels = [
        f'org.opencontainers.image.title="{spec.image}"',
        f'org.opencontainers.image.description="{description}"',
        'org.opencontainers.image.base.name="${BASE_IMAGE}"',
    ]
    if spec.source:
        labels.insert(2, f'org.opencontainers.image.source="{spec.source}"')
    index_arg = f"ARG IMAGEBOT_INDEX_URL={spec.index_url}\n" if spec.index_url else ""
    return (
        f"ARG BASE_IMAGE={spec.base}\n"
        f"FROM ${{BASE_IMAGE}} AS {SYSTEM_STAGE}\n"
        "ARG BASE_IMAGE\n"
        f"{index_arg}"
        "ARG DEBIAN_FRONTEND=noninteractive\n"
        "\n"
        "# Static labels; the build adds revision, created and version.\n"
        f"LABEL {_continued(labels, indent='      ')}\n"
        "\n"
        'SHELL ["/bin/bash", "-o", "pipefail", "-c"]\n'
        f"ENV VIRTUAL_ENV={VENV} \\\n"
        f"    PATH={VENV}/bin:$PATH \\\n"
        "    PIP_DISABLE_PIP_VERSION_CHECK=1 \\\n"
        "    LANG=C.UTF-8\n"
    )


def _apt_pin(entry: Requirement) -> str:
    return f"'{entry.name}={entry.version}'"


def _debian_r_pin(entry: Requirement) -> str:
    return f"'r-cran-{entry.name.lower()}={entry.version}*'"


def _apt_install(packages: Sequence[str]) -> list[str]:
    return [
        "apt-get update",
        f"apt-get install -y --no-install-recommends {' '.join(packages)}",
        "apt-get clean",
        "rm -rf /var/lib/apt/lists/*",
    ]


def _system_packages(spec: DockerfileSpec) -> str:
    packages = [_apt_pin(e) for layer in spec.layers for e in layer.set.apt]
    if _any_r(spec):
        packages.append("r-base-core")
    if not packages:
        return ""
    return (
        "# System packages: the apt entries of every set, plus R when a set has R packages.\n"
        f"RUN {CA_SECRET} \\\n"
        f"    {_chain(_apt_install(packages))}\n"
    )


def _venv() -> str:
    # The module travels inside the Dockerfile (base64: one line, no quoting), so the build needs
    # no file of imagebot's in the build context and the content tag follows the module's bytes.
    module = (resources.files("imagebot") / "incontainer" / "user_site.py").read_bytes()
    encoded = base64.b64encode(module).decode("ascii")
    return (
        "# One venv for every Python layer; jovyan can read but not change it. pip in a pod\n"
        "# installs into the user's site-packages instead, which is imported first: the module\n"
        f"# {USER_SITE_MODULE} (base64 below) installs itself into the venv.\n"
        f"RUN python3 -m venv {VENV} \\\n"
        f"    && echo {encoded} | base64 -d >/tmp/user_site.py \\\n"
        f"    && {VENV}/bin/python /tmp/user_site.py && rm -rf /tmp/user_site.py /root/.cache\n"
    )


def _r_layer(spec: DockerfileSpec, layer: SetLayer, number: int) -> str:
    req_set = layer.set
    if not req_set.r:
        return ""
    if req_set.r_source == "debian":
        step = _chain(_apt_install([_debian_r_pin(e) for e in req_set.r]))
    else:
        step = _cran_install(spec, req_set.r)
    return f"{_title(req_set, number)}, R packages.\nRUN {CA_SECRET} \\\n    {step}\n"


def _packages_stage() -> str:
    return (
        "# The Python packages: one layer per set here; `imagebot build` lays them on the\n"
        f"# {SYSTEM_STAGE!r} stage itself. SOURCE_DATE_EPOCH makes pip write hash-checked .pyc files.\n"
        f"FROM {SYSTEM_STAGE}\n"
        "USER root\n"
        "# Where the build downloads locked wheels; a CI mirror may override it.\n"
        "ARG PIP_INDEX_URL=https://pypi.org/simple\n"
    )


def _python_layer(layer: SetLayer, number: int) -> str:
    req_set = layer.set
    if not layer.lock_file:
        return f"# Layer {number}: set {req_set.name!r} has no Python packages.\n"
    target = f"{LOCK_MOUNT_DIR}/{req_set.name}.lock"
    mounts = [
        f"--mount=type=bind,source={layer.lock_file},target={target}",
        CA_SECRET,
        NETRC_SECRET,
    ]
    step = (
        f"{CA_ENV} SOURCE_DATE_EPOCH={SOURCE_DATE_EPOCH} \\\n    python -m pip install --no-cache-dir "
        f"--require-hashes --no-deps --only-binary :all: \\\n        -r {target}"
    )
    return f"{_title(req_set, number)}.\nRUN {_continued(mounts)} \\\n    {step}\n"


def _title(req_set: RequirementSet, number: int) -> str:
    title = f"# Layer {number}: set {req_set.name!r}"
    if req_set.description:
        title += f" ({req_set.description})"
    return title


def _cran_install(spec: DockerfileSpec, entries: Sequence[Requirement]) -> str:
    """Install from the CRAN-like snapshot, then fail the build unless every version matches."""
    pins = ", ".join(f'"{e.name}" = "{e.version}"' for e in entries)
    statements = [
        f"pins <- c({pins})",
        f'options(repos = c(CRAN = "{spec.r_repo}"), Ncpus = 2L, '
        'HTTPUserAgent = sprintf("R/%s R (%s)", getRversion(), '
        "paste(getRversion(), R.version$platform, R.version$arch, R.version$os)))",
        "install.packages(names(pins))",
        # packageVersion() == "1.1-0" compares as versions, so "1.1-0" matches 1.1.0.
        "bad <- Filter(function(p) !isTRUE(tryCatch(packageVersion(p) == pins[[p]], "
        "error = function(e) FALSE)), names(pins))",
        'if (length(bad)) { message("not at the pinned version: ", '
        'paste(bad, pins[bad], sep = "==", collapse = ", ")); quit(status = 1) }',
    ]
    # Dockerfile joins the backslash-continued lines before the shell sees the R code.
    script = "; \\\n        ".join(statements)
    return (
        f"{CA_ENV} \\\n    Rscript -e '{script}' \\\n"
        "    && rm -rf /tmp/Rtmp* /tmp/downloaded_packages"
    )


# `jupyter kernelspec install` stands in for Jupyter, which the Python layers add later:
# like jupyter_client it replaces <prefix>/share/jupyter/kernels/<name> with a copy of the spec.
_KERNELSPEC_STAND_IN = (
    "#!/bin/sh",
    '[ "$1" = kernelspec ] || exit 1',
    'case "$2" in --version) exit 0 ;; install) shift 2 ;; *) exit 1 ;; esac',
    "name=ir prefix=/usr/local",
    'while [ $# -gt 1 ]; do case "$1" in --name) name=$2; shift ;; --prefix) prefix=$2; shift ;;'
    " esac; shift; done",
    'dest="$prefix/share/jupyter/kernels/$name"',
    'rm -rf "$dest" && mkdir -p "${dest%/*}" && cp -R "$1" "$dest"',
)


def _r_kernel(spec: DockerfileSpec) -> str:
    has_irkernel = any(e.name == "IRkernel" for layer in spec.layers for e in layer.set.r)
    if not has_irkernel:
        return ""
    shim = "/tmp/imagebot-jupyter"
    return (
        "# The R kernel, registered in the venv where Jupyter looks for kernels. Jupyter itself\n"
        "# comes with the Python packages: a stand-in does what `jupyter kernelspec install` does.\n"
        f"RUN mkdir {shim} \\\n"
        f"    && printf '%s\\n' {' '.join(_sh_quote(line) for line in _KERNELSPEC_STAND_IN)} \\\n"
        f"        > {shim}/jupyter && chmod 755 {shim}/jupyter \\\n"
        f"    && PATH={shim}:$PATH R --quiet --no-save \\\n"
        f"        -e 'IRkernel::installspec(user = FALSE, prefix = \"{VENV}\")' \\\n"
        f"    && rm -rf {shim} /root/.local /root/.ipython /tmp/Rtmp*\n"
    )


def _sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _index_config(spec: DockerfileSpec) -> str:
    if not spec.index_url:
        return ""
    request = f" Ask for one at {spec.request_url}" if spec.request_url else ""
    comment = f"# Only vetted packages are served by this index.{request}"
    pip_conf = [comment, "[global]", "index-url = ${IMAGEBOT_INDEX_URL}"]
    uv_toml = [comment, "[[index]]", 'url = "${IMAGEBOT_INDEX_URL}"', "default = true"]
    return (
        "# pip and uv in the running image install from the vetted index only.\n"
        f"RUN printf '%s\\n' {_quoted_lines(pip_conf)} > /etc/pip.conf \\\n"
        "    && mkdir -p /etc/uv \\\n"
        f"    && printf '%s\\n' {_quoted_lines(uv_toml)} > /etc/uv/uv.toml\n"
    )


def _r_site(spec: DockerfileSpec) -> str:
    """R's site profile points at the vetted CRAN-like repository beside the index."""
    if not (spec.index_url and _any_r(spec)):
        return ""
    return r_site_dockerfile(spec.request_url)


# --- the image's R: the site profile --------------------------------------------------------

R_SITE_PROFILE = "/etc/R/Rprofile.site"  # Debian's R reads it for every session
# In the Dockerfile's shell: the vetted repository beside the index's simple/ (OUT/cran,
# imagebot.cran.CRAN_DIR; a test keeps the two equal without render importing the R modules).
REPO_FROM_INDEX_ARG = "${IMAGEBOT_INDEX_URL%/simple}/cran"


def rprofile_site(repo_url: str, request_url: str) -> list[str]:
    """Lines of the image's Rprofile.site: R installs from the vetted repository only, into
    the user's own library (R_LIBS_USER, created on first use: the home directory is a volume
    in the pod), and a package the repository does not serve is explained."""
    ask = f" Ask for one at {request_url}" if request_url else ""
    explain = f"Only vetted packages are served by {repo_url}.{ask}"
    return [
        f"# {explain}",
        "local({",
        f'  options(repos = c(CRAN = "{repo_url}"))',
        '  lib <- Sys.getenv("R_LIBS_USER")',
        "  if (nzchar(lib)) {",
        "    dir.create(lib, recursive = TRUE, showWarnings = FALSE)",
        "    if (dir.exists(lib)) .libPaths(c(lib, .libPaths()))",
        "  }",
        "})",
        "globalCallingHandlers(warning = function(w) {",
        '  if (grepl("is not available", conditionMessage(w), fixed = TRUE))',
        f'    message("{explain}")',
        "})",
    ]


def r_site_dockerfile(request_url: str) -> str:
    """The Dockerfile section that writes Rprofile.site; the repository follows the
    IMAGEBOT_INDEX_URL build arg, so the local stack's index is used locally."""
    lines = rprofile_site(REPO_FROM_INDEX_ARG, request_url)
    # Double quotes let the shell expand the build arg; the URLs were validated (no quotes).
    quoted = " \\\n    ".join('"' + line.replace('"', '\\"') + '"' for line in lines)
    return (
        "# R in the running image installs from the vetted CRAN-like repository only, into the\n"
        "# user's library (R_LIBS_USER); pure-R source packages need nothing but R to install.\n"
        f"RUN printf '%s\\n' \\\n    {quoted} \\\n    > {R_SITE_PROFILE}\n"
    )


def _quoted_lines(lines: Sequence[str]) -> str:
    # Double quotes so the shell expands ${IMAGEBOT_INDEX_URL}; the URL was checked safe.
    return " ".join('"' + line.replace('"', '\\"') + '"' for line in lines)


def _user_and_cmd() -> str:
    return (
        f"RUN useradd --uid {NB_UID} --gid {NB_GID} --no-log-init --create-home "
        "--shell /bin/bash jovyan\n"
        f"USER {NB_UID}:{NB_GID}\n"
        "WORKDIR /home/jovyan\n"
        "EXPOSE 8888\n"
        'CMD ["jupyter", "lab", "--ip=0.0.0.0", "--port=8888", "--no-browser"]\n'
    )


def _chain(steps: Sequence[str]) -> str:
    return " \\\n    && ".join(steps)


def _continued(parts: Sequence[str], indent: str = "    ") -> str:
    return f" \\\n{indent}".join(parts)


def spec_for_image(
    config: Config,
    image: ImageConfig,
    sets: Mapping[str, RequirementSet],
    lock_texts: Mapping[str, str | None],
) -> DockerfileSpec:
    """The render inputs of one image. `lock_texts` maps set name -> its lock (None: missing)."""
    context = (config.root / image.context).resolve()
    layers: list[SetLayer] = []
    for set_name in image.sets:
        text = lock_texts.get(set_name)
        lock = parse_lock(set_name, text) if text is not None else None
        lock_file = lock_path(config.requirements_dir, set_name)
        if lock is None:
            raise StaleError(
                f"{_relative(lock_file, config.root)} is missing or has no imagebot header",
                "run `imagebot lock`, then `imagebot render`",
            )
        source = _relative(lock_file, context) if lock.packages else None
        layers.append(SetLayer(sets[set_name], source))
    return DockerfileSpec(
        image=image.name,
        base=image.base or "",
        source=config.source,
        index_url=config.index.url,
        request_url=config.index.request_url,
        r_repo=image.r_repo,
        layers=tuple(layers),
        config_file=config.path.name,
    )


def _relative(path: Path, start: Path) -> str:
    try:
        return path.resolve().relative_to(start).as_posix()
    except ValueError:
        return path.as_posix()
