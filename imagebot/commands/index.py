"""Commands: index build/serve, env check/script (vetted package index, user environments)."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

import typer

from imagebot.errors import UsageError
from imagebot.files import write_atomically

index_app = typer.Typer(
    help="The vetted package index pods install from (PEP 503 static files).",
    no_args_is_help=True,
)
env_app = typer.Typer(
    help="Users' environment files: check them and write reproducible install scripts.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(index_app, name="index")
    app.add_typer(env_app, name="env")


@index_app.command("build")
def build(
    ctx: typer.Context,
    out: Path = typer.Argument(..., help="Directory to write the index into (replaced whole)."),
    jobs: int = typer.Option(8, "--jobs", "-j", min=1, max=64, help="Parallel downloads."),
    refresh: bool = typer.Option(
        False, "--refresh", help="Re-resolve every package and re-read PyPI (ignore the old build)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the build summary as JSON."),
) -> None:
    """Resolve every vetted package for the image's Python and platform and write OUT."""
    from imagebot import console
    from imagebot.cli import state
    from imagebot.index import (
        BuildOptions,
        PlainProgress,
        RichProgress,
        UvResolver,
        build_index,
        load_locks,
        load_roots,
    )
    from imagebot.index_pages import image_target
    from imagebot.pypi import PYPI_SIMPLE_URL, PyPI

    config = state(ctx).config
    # Where vetted packages come from; a PyPI mirror can stand in (same PEP 691 API).
    upstream = os.environ.get("IMAGEBOT_UPSTREAM_INDEX", PYPI_SIMPLE_URL)
    target = image_target(config.images.values())
    roots = load_roots(config.requirements_dir)
    image_sets = [name for image in config.locked_images for name in image.sets]
    locks = load_locks(config.requirements_dir, image_sets)
    progress = RichProgress() if console.stderr_is_tty() else PlainProgress(console.info)
    with console.group(f"index build: {len(roots)} vetted packages for {target.describe()}"):
        result = build_index(
            out,
            roots,
            target,
            PyPI(upstream),
            UvResolver(index_url=upstream),
            progress,
            BuildOptions(jobs=jobs, refresh=refresh, echo=console.info),
            locks,
        )
    console.info(
        f"{result.out}: {result.packages} packages, {result.files} files "
        f"({result.downloaded} downloaded, {result.reused} reused, "
        f"{result.bytes_downloaded / 1e6:.1f} MB) in {result.seconds:.1f}s"
    )
    if as_json:
        summary = asdict(result)
        summary["out"] = str(result.out)
        print(json.dumps(summary, indent=1, sort_keys=True))


@index_app.command("serve")
def serve(
    out: Path = typer.Argument(..., help="A directory written by `imagebot index build`."),
    port: int = typer.Option(5556, "--port", help="Port to listen on."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not log requests."),
) -> None:
    """Serve OUT over HTTP (static files; PEP 691 JSON for clients that ask for it)."""
    from imagebot import console
    from imagebot.index import make_server

    server = make_server(out, host, port, quiet=quiet)
    bound_host, bound_port = server.server_address[:2]
    console.info(f"serving {out} at http://{bound_host}:{bound_port}/simple/ (Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        console.info("stopped")
    finally:
        server.server_close()


def _index_location(ctx: typer.Context, index: str | None) -> str:
    from imagebot.cli import state

    if index:
        return index
    url = state(ctx).config.index.url
    if not url:
        raise UsageError(
            "no index to check against",
            "pass --index OUT_DIR_OR_URL, or set [index] url in imagebot.toml",
        )
    return url


def _read(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{file}: cannot read it ({exc})", "pass a readable text file") from None


INDEX_OPTION_HELP = (
    "The index to vet against: a built OUT directory or the index URL "
    "(default: [index] url in imagebot.toml)."
)


@env_app.command("check")
def check(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="The environment file (name==version per line)."),
    index: str | None = typer.Option(None, "--index", help=INDEX_OPTION_HELP),
) -> None:
    """Check that every line of FILE is pinned and vetted; report every problem."""
    from imagebot import console
    from imagebot.cli import state
    from imagebot.envfile import check_env_file
    from imagebot.index import load_manifest

    manifest = load_manifest(_index_location(ctx, index))
    request_url = state(ctx).config.index.request_url
    requirements = check_env_file(str(file), _read(file), manifest, request_url)
    console.info(f"{file}: {len(requirements)} packages, all pinned and vetted")


@env_app.command("script")
def script(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="The environment file (name==version per line)."),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write the script here (default: stdout)."
    ),
    index: str | None = typer.Option(None, "--index", help=INDEX_OPTION_HELP),
    index_url: str | None = typer.Option(
        None,
        "--index-url",
        help="Index URL the script installs from (default: [index] url in imagebot.toml).",
    ),
) -> None:
    """Write a bash script that reinstalls FILE's environment, pinned with hashes."""
    from imagebot import console
    from imagebot.cli import state
    from imagebot.envfile import (
        check_env_file,
        lock_problems,
        render_script,
        resolve_lock,
        uv_index_url,
    )
    from imagebot.errors import EnvFileError
    from imagebot.index import load_manifest
    from imagebot.index_pages import parse_compiled

    config = state(ctx).config
    location = _index_location(ctx, index)
    manifest = load_manifest(location)
    requirements = check_env_file(str(file), _read(file), manifest, config.index.request_url)
    lock = resolve_lock(requirements, location, manifest.target, str(file))
    problems = lock_problems(str(file), lock, manifest)
    if problems:
        raise EnvFileError(problems, str(file), "rebuild the index, then run this again")
    install_url = index_url or config.index.url or uv_index_url(location)
    packages = len(parse_compiled(lock))
    text = render_script(
        file.name,
        lock,
        install_url,
        config.index.request_url,
        {
            "packages": str(packages),
            "target": manifest.target.describe(),
        },
    )
    if output is None:
        sys.stdout.write(text)
        return
    write_atomically({output: text}, mode=0o755)
    console.info(f"{output}: installs {packages} packages (bash {output})")
