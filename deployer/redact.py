"""Endpoints fit to print: credentials written into a URL never reach a table, an error or a log.

`http://admin:PW@host` is a valid way to give a control plane (or any service) its credentials, and
URLs are shown everywhere: the result table, error lines, GitHub annotations, the step summary, the
PR comment. Every place that shows an endpoint shows `printable_url(endpoint)`; the GitHub Action
also masks `url_secrets(endpoint)` before it prints anything.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

MASK = "***"
# Scheme (with `//` or Flyte's `dns:///`), then the userinfo: everything up to the last `@` before
# the path (a password may hold a raw `@`).
_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*:/{2,3})?(?P<userinfo>[^/\s]*)@")


def printable_url(url: str) -> str:
    """`url` with its userinfo replaced: `https://user:pw@host/x` → `https://***@host/x`."""
    match = _USERINFO.match(url.strip())
    if match is None:
        return url
    return f"{match.group('scheme') or ''}{MASK}@{url.strip()[match.end() :]}"


def url_secrets(url: str) -> tuple[str, ...]:
    """The secret part of `url`'s userinfo (the password, or a lone token), as written and decoded."""
    match = _USERINFO.match(url.strip())
    if match is None:
        return ()
    userinfo = match.group("userinfo")
    secret = userinfo.split(":", 1)[1] if ":" in userinfo else userinfo
    return tuple(s for s in dict.fromkeys((secret, unquote(secret))) if s)


def without_secrets(text: str, url: str) -> str:
    """`text` (say, a library's error message quoting the URL) with `url`'s secrets masked."""
    for secret in sorted(url_secrets(url), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
