"""Command modules. Each exposes `register(app)` and keeps heavy imports inside functions."""

from imagebot.commands import audit, core, gitops, images, index, release, review

ALL = (core, images, gitops, release, index, review, audit)
