"""A CRAN-like upstream on loopback for the unit tests of requirements/cran.lock, and a project
whose R packages come from it (no Python package to resolve, so no uv and no PyPI)."""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from http_fixtures import serve_files

# (name, version, Imports) -> tarball bytes: here imports rprojroot, a dependency of its own.
PACKAGES: dict[tuple[str, str, str], bytes] = {
    ("R6", "2.5.1", ""): b"R6 2.5.1 tarball",
    ("here", "1.0.1", "rprojroot (>= 2.0.2)"): b"here 1.0.1 tarball",
    ("rprojroot", "2.0.3", ""): b"rprojroot 2.0.3 tarball",
}

R_SET = """\
[set]
description = "R from a CRAN-like repository"
r_source = "cran"

[r]
here = { version = "1.0.1", reason = "paths", requested_by = "@kari" }
"""


@dataclass
class Upstream:
    """What the loopback upstream serves (path -> body; change it in place, the server reads
    this dict) and the paths it was asked for."""

    host: str
    served: dict[str, bytes] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.host}/cran"

    def publish(self, packages: dict[tuple[str, str, str], bytes], listed: bool = True) -> None:
        """Serve the tarballs and (when `listed`) a PACKAGES.gz whose MD5sums are theirs."""
        stanzas = []
        for (name, version, imports), body in packages.items():
            self.served[f"/cran/src/contrib/{name}_{version}.tar.gz"] = body
            lines = [f"Package: {name}", f"Version: {version}"]
            lines += [f"Imports: {imports}"] if imports else []
            lines.append(f"MD5sum: {hashlib.md5(body).hexdigest()}")
            stanzas.append("\n".join(lines) + "\n")
        if listed:
            text = "\n".join(stanzas).encode()
            self.served["/cran/src/contrib/PACKAGES.gz"] = gzip.compress(text, mtime=0)


@contextmanager
def cran_upstream(packages: dict[tuple[str, str, str], bytes] | None = None) -> Iterator[Upstream]:
    served: dict[str, bytes] = {}
    requests: list[str] = []
    with serve_files(served, on_request=lambda handler: requests.append(handler.path)) as host:
        upstream = Upstream(host, served, requests)
        upstream.publish(PACKAGES if packages is None else packages)
        yield upstream


def r_config(config: str, upstream_url: str) -> str:
    """The unit tests' imagebot.toml with `[index] cran_upstream` pointing at the upstream, and
    the image installing its cran sets from it too (`r_repo`)."""
    anchor = 'request_url = "https://example.org/stats/images#asking-for-a-package"\n'
    image = 'sets = ["base", "extra"]\n'
    assert anchor in config and image in config
    config = config.replace(image, f'{image}r_repo = "{upstream_url}"\n')
    return config.replace(anchor, f'{anchor}cran_upstream = "{upstream_url}"\n')
