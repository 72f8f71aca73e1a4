"""A ``requests`` session that reads the proxy and CA-bundle environment once per host.

``requests.Session.request`` calls ``merge_environment_settings`` on every call, which walks
``os.environ`` for ``*_proxy`` variables and evaluates ``NO_PROXY`` against the URL (0.3-0.7 ms
a call, measured on the dispatch benchmark: the whole cost of a one-shipment tracking call's
client side). The connector talks to one CI host, so the answer is the same every time: it is
worked out on the first call to each scheme and host and reused for the session's life. The
outcome is exactly what ``requests`` would compute (same functions, same precedence: explicit
``proxies``/``verify`` first, then the environment, then the session's own settings);
``trust_env = False`` still turns the environment off. A change to the environment after the
first call is not seen by a live session (a new client sees it).

``send`` skips, for a call that follows no redirect and has no response hook (the client's),
what only matters to an answer that sets a cookie or redirects: ``requests`` parses the URL
again to extract cookies (twice: the adapter's ``build_response`` too, see
:class:`connector.ci.bounded.BoundedAdapter`) and to look for a redirect target on every
answer, ~5 % of a tracking call's CPU. An answer with a ``Set-Cookie`` header or a redirect
goes through the same functions as before.

``prepare_request`` is short-circuited the same way for the calls the client makes (a
form-encoded ``str`` body; no cookies, auth, params, files or hooks on the request or the
session): ``requests`` merges cookie jars, looks up ``~/.netrc``, re-parses the URL and
re-validates every header on each call (~0.3 ms a call, a fifth of a one-shipment tracking
call's client CPU). Here the URL is prepared (and ``.netrc`` asked) once per URL, the merged,
validated headers once per header set; the prepared request is field for field the one
``requests`` builds (``tests/connector/ci/test_session.py`` compares them). Anything else
takes ``requests``' own path.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, cast
from urllib.parse import quote_plus, urlencode, urlsplit

import requests
from requests.cookies import RequestsCookieJar, extract_cookies_to_jar
from requests.models import PreparedRequest, Request
from requests.sessions import merge_setting, preferred_clock
from requests.structures import CaseInsensitiveDict
from requests.utils import get_auth_from_url, get_environ_proxies, get_netrc_auth, super_len
from urllib3 import HTTPHeaderDict

__all__ = ["FORM_CONTENT_TYPE", "EnvOnceSession", "form_body", "sets_cookies"]

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


def form_body(payload: Mapping[str, str | None]) -> str:
    """``payload`` form-encoded exactly as ``requests`` encodes a dict passed as ``data``
    (``None`` values left out). Done here because ``requests`` checks each argument against
    typing protocols on the way (about 0.4 ms a call on CPython 3.11); the caller sends the
    ``Content-Type`` header ``requests`` would have added."""
    pairs = [(k, v) for k, v in payload.items() if v is not None]
    if all(type(k) is str and type(v) is str for k, v in pairs):
        return "&".join(_quote(k) + "=" + _quote(v) for k, v in pairs)
    return urlencode(pairs)


# What quote_plus leaves as it is, and a JSON list of ints (mark_exported's ids).
_PLAIN = re.compile(r"[A-Za-z0-9_.~-]*")
_INT_LIST = re.compile(r"[0-9\[\],]*")


def _quote(text: str) -> str:
    """``urllib.parse.quote_plus(text, safe="")`` (what ``urlencode`` does to each key and
    value), with two short cuts giving the same text: ``quote_plus`` quotes byte by byte in
    Python, ~0.1 ms for the 1 KB id list of one ``mark_exported`` call (a tenth of its CPU)."""
    if _PLAIN.fullmatch(text):
        return text
    if _INT_LIST.fullmatch(text):
        return text.replace("[", "%5B").replace(",", "%2C").replace("]", "%5D")
    return quote_plus(text, safe="")


_CACHE_LIMIT = 64
"""Entries per per-call cache here and in :class:`connector.ci.bounded.BoundedAdapter`
(cleared when full: a client calls a handful of URLs)."""


def _no_hooks(hooks: Any) -> bool:
    """``requests``' default hooks (no response hook registered)."""
    return hooks is None or (isinstance(hooks, dict) and not any(hooks.values()))


def sets_cookies(raw: Any) -> bool:
    """Whether ``requests``' ``extract_cookies_to_jar`` could find a cookie in the urllib3
    answer ``raw``: it reads only ``Set-Cookie`` and ``Set-Cookie2`` headers (urllib3's
    headers hold every header of the answer). Anything but urllib3's headers: yes."""
    headers = getattr(raw, "headers", None)
    if not isinstance(headers, HTTPHeaderDict):
        return True
    return "set-cookie" in headers or "set-cookie2" in headers


class EnvOnceSession(requests.Session):
    """``requests.Session`` with the environment's proxies and CA bundle resolved once per
    (scheme, host, ``no_proxy`` override)."""

    def __init__(self) -> None:
        super().__init__()
        self._environment: dict[tuple[str, str, str | None], tuple[dict[str, str], str | None]]
        self._environment = {}
        # Prepared URL per (URL, trust_env); None: it needs requests' path (credentials).
        self._urls: dict[tuple[str, bool], str | None] = {}
        self._headers: dict[tuple[Any, ...], CaseInsensitiveDict[Any]] = {}

    def prepare_request(self, request: Request) -> PreparedRequest:
        """``requests``' own ``prepare_request``, without its per-call merging for a plain
        form POST (see the module docstring)."""
        data = request.data
        if not (
            isinstance(data, str)
            and data
            and isinstance(request.url, str)
            and isinstance(request.method, str)
            and not request.files
            and request.json is None
            and not request.params
            and not request.cookies
            and request.auth is None
            and self.auth is None
            and not self.params
            and not self.cookies
            and _no_hooks(request.hooks)
            and _no_hooks(self.hooks)
        ):
            return super().prepare_request(request)
        url = self._prepared_url(request.url)
        headers = self._merged_headers(request.headers) if url is not None else None
        if url is None or headers is None:
            return super().prepare_request(request)
        p = PreparedRequest()
        p.method = request.method.upper()
        p.url = url
        p.headers = headers
        # What the merge of two empty jars gives (read on a redirect; not in the stubs).
        setattr(p, "_cookies", RequestsCookieJar())  # noqa: B010
        p.body = data  # a str body is sent as is, without a Content-Type of requests' own
        length = cast("Callable[[Any], int]", super_len)(data)  # untyped in requests
        if length:
            p.headers["Content-Length"] = str(length)
        return p

    def send(self, request: PreparedRequest, **kwargs: Any) -> requests.Response:
        """``requests``' own ``send``; for a call that follows no redirect and has no
        response hook, without extracting cookies from an answer that sets none nor looking
        for the redirect target of an answer that is no redirect (see the module)."""
        if (
            kwargs.get("allow_redirects", True) is not False
            or "proxies" not in kwargs
            or not isinstance(request, PreparedRequest)
            or not _no_hooks(request.hooks)
        ):
            return super().send(request, **kwargs)
        # What requests.Session.send does, step for step, for such a call.
        del kwargs["allow_redirects"]
        kwargs.setdefault("stream", self.stream)
        kwargs.setdefault("verify", self.verify)
        kwargs.setdefault("cert", self.cert)
        adapter = self.get_adapter(url=cast(str, request.url))
        start = preferred_clock()
        r = adapter.send(request, **kwargs)
        r.elapsed = timedelta(seconds=preferred_clock() - start)
        # No response hook: the answer is the adapter's, with no history.
        if sets_cookies(r.raw):
            extract = cast("Callable[..., None]", extract_cookies_to_jar)  # untyped in requests
            extract(self.cookies, request, r.raw)
        if r.is_redirect:  # resolve_redirects yields nothing for any other answer
            with contextlib.suppress(StopIteration):
                # Response.next's request, as requests stores it (not in the stubs).
                following = next(self.resolve_redirects(r, request, yield_requests=True, **kwargs))
                setattr(r, "_next", following)  # noqa: B010
        if not kwargs.get("stream"):
            r.content  # noqa: B018 (read now, as requests does)
        return r

    def _prepared_url(self, url: str) -> str | None:
        key = (url, self.trust_env)
        if key in self._urls:
            return self._urls[key]
        probe = PreparedRequest()
        probe.prepare_url(url, {})
        prepared: str | None = cast(str, probe.url)
        if any(get_auth_from_url(cast(str, prepared))) or (self.trust_env and get_netrc_auth(url)):
            prepared = None  # credentials to apply: requests' own path does it
        if len(self._urls) >= _CACHE_LIMIT:
            self._urls.clear()
        self._urls[key] = prepared
        return prepared

    def _merged_headers(self, extra: Any) -> CaseInsensitiveDict[Any] | None:
        own = self.headers
        try:
            # A CaseInsensitiveDict's items are its store's values, read here in C.
            # (_store: requests' own attribute, not in its stubs.)
            items = (
                cast(Any, own)._store.values() if type(own) is CaseInsensitiveDict else own.items()
            )
            key = (tuple(items), tuple((extra or {}).items()))
            known = self._headers.get(key)
        except TypeError:  # an unhashable header value: requests' own path
            return None
        if known is None:
            probe = PreparedRequest()
            merge = cast("Callable[..., Any]", merge_setting)  # untyped in requests
            probe.prepare_headers(merge(extra, self.headers, dict_class=CaseInsensitiveDict))
            known = cast("CaseInsensitiveDict[Any]", probe.headers)
            if len(self._headers) >= _CACHE_LIMIT:
                self._headers.clear()
            self._headers[key] = known
        # known.copy(), without a Python __setitem__ per header: the same store, copied.
        copy: Any = CaseInsensitiveDict()
        copy._store = cast(Any, known)._store.copy()
        return cast("CaseInsensitiveDict[Any]", copy)

    def _from_environment(
        self, url: str, no_proxy: str | None
    ) -> tuple[dict[str, str], str | None]:
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc, no_proxy)
        found = self._environment.get(key)
        if found is None:
            bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
            found = (dict(get_environ_proxies(url, no_proxy=no_proxy)), bundle)
            self._environment[key] = found
        return found

    def merge_environment_settings(
        self,
        url: Any,
        proxies: Any,
        stream: Any,
        verify: Any,
        cert: Any,
    ) -> Any:
        """``requests``' own merge, with the environment part cached (see the module)."""
        if self.trust_env:
            no_proxy = proxies.get("no_proxy") if proxies is not None else None
            env_proxies, bundle = self._from_environment(str(url), no_proxy)
            if proxies is not None:
                for k, v in env_proxies.items():
                    proxies.setdefault(k, v)
            if verify is True or verify is None:
                verify = bundle or verify
        merge = cast("Callable[[Any, Any], Any]", merge_setting)  # untyped in requests
        if proxies is not None and not self.proxies:
            # merge_setting's answer without its protocol checks: the request's own proxies
            # with None values dropped.
            merged_proxies = {k: v for k, v in proxies.items() if v is not None}
        else:
            merged_proxies = merge(proxies, self.proxies)
        return {
            "proxies": merged_proxies,
            "stream": merge(stream, self.stream),
            "verify": merge(verify, self.verify),
            "cert": merge(cert, self.cert),
        }
