"""ADAPTER: the one HTTP client (standard-library urllib) for the registry, the package index and
every other web service imagebot talks to.

`send` makes one request and returns the response whatever its status, so callers decide what
a 404 or a 401 means. One error mapping for everyone: a 5xx, 408 or 429 answer, a refused or
reset connection and a timeout raise `errors.TransientError` (the one error `imagebot.retry`
retries); a fault that another try cannot fix (a bad URL, a TLS certificate that does not
verify, a redirect that is refused) raises the caller's `failure` class.

Redirects are followed (at most MAX_REDIRECTS, http and https only) keeping HEAD a HEAD, and
credentials never cross an origin: `Authorization`, `Proxy-Authorization` and `Cookie` are
dropped when a redirect leads to another scheme, host or port. Messages show URLs without
userinfo or query, where signed URLs carry their tokens.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

from imagebot import __version__
from imagebot.errors import ImagebotError, TransientError

DEFAULT_TIMEOUT = 30.0
MAX_REDIRECTS = 5
USER_AGENT = f"imagebot/{__version__}"
TRANSIENT_STATUSES = frozenset({408, 429})
CREDENTIAL_HEADERS = ("Authorization", "Proxy-Authorization", "Cookie")
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Response:
    url: str  # where the answer came from, after redirects
    status: int
    headers: Mapping[str, str]  # names in lower case
    body: bytes


class Stream:
    """A response whose body is read in chunks (downloads); reading faults are transient."""

    def __init__(self, url: str, status: int, headers: Mapping[str, str], raw: Any) -> None:
        self.url = url
        self.status = status
        self.headers = headers
        self._raw = raw

    def read(self, size: int = -1) -> bytes:
        import http.client

        try:
            data: bytes = self._raw.read(size) if self._raw is not None else b""
        except (OSError, http.client.HTTPException) as exc:
            raise TransientError(
                f"reading {display_url(self.url)} failed: {_reason(exc)}"
            ) from None
        return data

    def chunks(self, size: int = 1 << 20) -> Iterator[bytes]:
        while chunk := self.read(size):
            yield chunk


def origin(url: str) -> tuple[str, str, int | None]:
    """PURE: (scheme, host, port) of a URL, with the scheme's default port filled in."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port or _DEFAULT_PORTS.get(scheme)


def same_origin(a: str, b: str) -> bool:
    return origin(a) == origin(b)


def display_url(url: str) -> str:
    """PURE: url for messages: no userinfo, no query or fragment."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}" if parts.scheme else url


def send(
    method: str,
    url: str,
    *,
    failure: type[ImagebotError],
    headers: Mapping[str, str] | None = None,
    data: bytes | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Response:
    """One request, its whole body read (none for HEAD). See the module docstring for errors."""
    with stream(method, url, failure=failure, headers=headers, data=data, timeout=timeout) as got:
        body = got.read() if method != "HEAD" else b""
    return Response(got.url, got.status, got.headers, body)


@contextmanager
def stream(
    method: str,
    url: str,
    *,
    failure: type[ImagebotError],
    headers: Mapping[str, str] | None = None,
    data: bytes | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Iterator[Stream]:
    """One request whose body the caller reads from the yielded Stream."""
    import http.client
    import ssl

    if urlsplit(url).scheme not in ("http", "https"):
        raise failure(f"refusing to fetch {display_url(url)}: only http and https URLs")
    request = urllib.request.Request(
        url, data=data, method=method, headers={"User-Agent": USER_AGENT, **(headers or {})}
    )
    try:
        raw: Any = _opener().open(request, timeout=timeout)
    except _RedirectRefused as exc:
        raise failure(str(exc)) from None
    except urllib.error.HTTPError as exc:
        raw = exc
    except (ssl.SSLCertVerificationError, ValueError) as exc:
        raise failure(f"cannot fetch {display_url(url)}: {_reason(exc)}") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ssl.SSLCertVerificationError):
            raise failure(f"cannot fetch {display_url(url)}: {_reason(exc)}") from None
        raise TransientError(f"cannot reach {display_url(url)}: {_reason(exc)}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise TransientError(f"cannot reach {display_url(url)}: {_reason(exc)}") from None
    status = int(raw.status if raw.status is not None else raw.code)
    final_url = str(raw.geturl() or url)
    try:
        if status >= 500 or status in TRANSIENT_STATUSES:
            raise TransientError(f"HTTP {status} from {display_url(final_url)}")
        if 300 <= status < 400:
            raise failure(
                f"{display_url(final_url)} answered HTTP {status} and the redirect was not "
                f"followed (more than {MAX_REDIRECTS} redirects, or a loop)"
            )
        body = None if isinstance(raw, urllib.error.HTTPError) and raw.fp is None else raw
        yield Stream(final_url, status, _lower(raw.headers), body)
    finally:
        raw.close()


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    return str(reason).strip() or type(reason).__name__


def _lower(headers: Any) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in headers.items()} if headers else {}


class _RedirectRefused(urllib.error.URLError):
    def __str__(self) -> str:
        return str(self.reason)


class _SafeRedirects(urllib.request.HTTPRedirectHandler):
    """Follow http(s) redirects, keep the method of a HEAD, and keep credentials on their origin."""

    max_redirections = MAX_REDIRECTS

    def http_error_302(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any
    ) -> Any:
        location = headers.get("location") or headers.get("uri") or ""
        scheme = urlsplit(urljoin(req.full_url, location)).scheme
        if location and scheme not in ("http", "https"):
            raise _RedirectRefused(
                f"{display_url(req.full_url)} redirected to a {scheme} URL; "
                "only http and https are followed"
            )
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is None:
            return None
        if req.get_method() == "HEAD":
            new.method = "HEAD"
        if not same_origin(req.full_url, new.full_url):
            for name in CREDENTIAL_HEADERS:
                new.remove_header(name.capitalize())  # urllib stores names capitalize()d
        return new


_OPENER: urllib.request.OpenerDirector | None = None


def _opener() -> urllib.request.OpenerDirector:
    # No shared SSLContext: measured 2-3x slower here, since resumed TLS sessions are slow
    # through some proxies; a context per connection costs little next to a download.
    global _OPENER
    if _OPENER is None:
        _OPENER = urllib.request.build_opener(_SafeRedirects)
    return _OPENER
