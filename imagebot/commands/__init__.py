"""Command modules, one per area. A command parses its options, calls one operation and prints.

Each module's `register(app)` adds its module-level command functions, one line each:
`app.command("name")(function)` (a group of subcommands: `app.add_typer`). Heavy libraries
are imported inside the functions, so each command pays only for what it uses.
"""

from imagebot.commands import audit, core, gitops, images, impact, index, release, review

ALL = (core, images, gitops, release, index, review, audit, impact)
