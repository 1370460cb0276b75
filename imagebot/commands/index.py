"""Commands: index build/serve, env check/script (vetted package index, user environments)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from imagebot.errors import UsageError
from imagebot.files import Unreadable, read_text, write_atomically
from imagebot.state import state

if TYPE_CHECKING:
    from imagebot.index import BuildResult

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
    from imagebot.index import PlainProgress, RichProgress, build_vetted_index, vetted_inputs

    config = state(ctx).config
    inputs = vetted_inputs(config)
    for line in inputs.not_served:
        console.warning(line)
    progress = RichProgress() if console.stderr_is_tty() else PlainProgress(console.info)
    title = f"index build: {len(inputs.roots)} vetted packages for {inputs.target.describe()}"
    if inputs.cran.roots:
        title += f", {len(inputs.cran.roots)} vetted R packages"
    with console.group(title):
        result = build_vetted_index(
            config,
            out,
            env=os.environ,
            inputs=inputs,
            jobs=jobs,
            refresh=refresh,
            progress=progress,
            echo=console.info,
        )
    _print_build(result, as_json)


def _print_build(result: BuildResult, as_json: bool) -> None:
    from imagebot import console

    console.info(
        f"{result.out}: {result.packages} packages, {result.files} files "
        f"({result.downloaded} downloaded, {result.reused} reused, "
        f"{result.bytes_downloaded / 1e6:.1f} MB) in {result.seconds:.1f}s"
    )
    if result.r_packages:
        console.info(
            f"{result.out}/cran: {result.r_packages} R packages "
            f"({result.r_downloaded} downloaded, {result.r_reused} reused, "
            f"{result.r_bytes_downloaded / 1e6:.1f} MB)"
        )
    if as_json:
        console.print_json(result.to_json(), indent=1, sort_keys=True)


@index_app.command("publish")
def publish(
    ctx: typer.Context,
    out: Path = typer.Argument(..., help="A directory written by `imagebot index build`."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="List what would be added, changed and removed; upload nothing."
    ),
    jobs: int = typer.Option(8, "--jobs", "-j", min=1, max=64, help="Parallel uploads."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
) -> None:
    """Upload OUT to [index] publish: files, then pages, then the manifest; removals last.

    Only objects whose sha256 differs are uploaded; a rerun finishes an interrupted publish.
    """
    from imagebot import console
    from imagebot.destinations import publish_out
    from imagebot.errors import ConfigError
    from imagebot.publish import PublishOptions
    from imagebot.validate import DESTINATION_HINT

    config = state(ctx).config
    destination = config.index.publish
    if not destination:
        raise ConfigError(f"{config.path.name}: index.publish is not set", DESTINATION_HINT)
    options = PublishOptions(dry_run=dry_run, jobs=jobs, echo=console.info)
    with console.group(f"index publish: {out} to {destination}"):
        result = publish_out(out, destination, config.root, options)
    for line in result.summary_lines():
        console.info(line)
    if as_json:
        console.print_json(result.to_json())


@index_app.command("serve")
def serve(
    out: Path = typer.Argument(..., help="A directory written by `imagebot index build`."),
    port: int = typer.Option(5556, "--port", help="Port to listen on (0: any free port)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not log requests."),
) -> None:
    """Serve OUT over HTTP (static files; PEP 691 JSON for clients that ask for it)."""
    from imagebot import console
    from imagebot.index_server import make_server

    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port} is not a TCP port", "pass a port from 0 to 65535")
    server = make_server(out, host, port, quiet=quiet)
    bound_port = server.server_address[1]
    console.info(f"serving {out} at http://{host}:{bound_port}/simple/ (Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        console.info("stopped")
    finally:
        server.server_close()


def _index_location(ctx: typer.Context, index: str | None) -> str:
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
        return read_text(file)
    except Unreadable as exc:
        raise UsageError(str(exc), "pass a readable UTF-8 text file") from None


INDEX_OPTION_HELP = (
    "The index to vet against: a built OUT directory or the index URL "
    "(default: [index] url in imagebot.toml)."
)


@env_app.command("check")
def check(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="name==version per line, or an R renv.lock."),
    index: str | None = typer.Option(None, "--index", help=INDEX_OPTION_HELP),
) -> None:
    """Check that every line of FILE is pinned and vetted; report every problem."""
    from imagebot import console
    from imagebot.envfile import check_env_file, check_renv_lock, is_renv_lock
    from imagebot.index import load_manifest

    manifest = load_manifest(_index_location(ctx, index))
    request_url = state(ctx).config.index.request_url
    text = _read(file)
    if is_renv_lock(text):
        lock = check_renv_lock(str(file), text, manifest, request_url)
        console.info(f"{file}: {len(lock.packages)} R packages, all vetted at these versions")
        return
    requirements = check_env_file(str(file), text, manifest, request_url)
    console.info(f"{file}: {len(requirements)} packages, all pinned and vetted")


@env_app.command("script")
def script(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="name==version per line, or an R renv.lock."),
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
    from imagebot.envfile import env_script, is_renv_lock, r_repo_url, renv_script, uv_index_url
    from imagebot.index import load_manifest

    config = state(ctx).config
    location = _index_location(ctx, index)
    manifest = load_manifest(location)
    install_url = index_url or config.index.url or uv_index_url(location)
    text = _read(file)
    if is_renv_lock(text):
        repo = r_repo_url(index_url or config.index.url or location)
        result = renv_script(file, text, manifest, repo, config.index.request_url)
    else:
        result = env_script(file, text, location, manifest, install_url, config.index.request_url)
    if output is None:
        sys.stdout.write(result.text)
        return
    write_atomically({output: result.text}, mode=0o755)
    console.info(f"{output}: installs {result.packages} packages (bash {output})")
