"""Credential redaction for everything the doctor prints.

The doctor prints its targets (DSNs, URIs, paths) in its table, its JSON and
its error lines, and drivers quote parts of them in their error messages.
Redaction fails closed: a target is parsed here by the rules the drivers
use, not by :func:`urllib.parse.urlsplit` (which ends the host at an
unescaped ``/``, ``?`` or ``#`` in a password, and raises on a malformed
IPv6 host).  What cannot be parsed is shown as its scheme alone
(``postgresql://<redacted>``) or as ``<redacted>``, and a driver's message
about such a target is withheld rather than scrubbed by guesswork.
"""

import re
from dataclasses import dataclass, field
from urllib.parse import unquote

__all__ = ["redact", "scrub", "Redacted", "parse"]

HIDDEN = "***"
UNPARSEABLE = "<redacted>"
_PIECE = 3  # pieces of a password this long or longer are scrubbed on their own

# A query or DSN key holding any of these (case-insensitive) is a secret:
# password, sslpassword, tlsCertificateKeyFilePassword, pwd, token, apikey,
# secret... "key" also hides key-file paths, which is harmless.
_SECRET_WORDS = ("pass", "pwd", "secret", "token", "key", "credential", "auth_token", "signature")
# PyMongo's authMechanismProperties is itself a list of KEY:VALUE pairs.
_NESTED = ("authmechanismproperties",)
# One host of a URI's host list: [IPv6], or a name / IPv4, then an optional port.
_HOST = re.compile(r"(\[[0-9A-Za-z:.%_-]*\]|[^\[\]\s@/?#,]*)(:\d*)?")


def is_secret(key: str) -> bool:
    """Whether a DSN or query key names a credential."""
    key = unquote(key).lower().replace("-", "_")
    return any(word in key for word in _SECRET_WORDS)


@dataclass
class Redacted:
    """A target as it may be shown, and the secrets to scrub from messages about it."""

    shown: str
    secrets: list[str] = field(default_factory=list)
    parsed: bool = True


def parse(target: str) -> Redacted:
    """Redact *target*: a URI, a libpq ``key=value`` DSN, or a plain path or name."""
    if "://" in target:
        return _uri(target)
    if "=" in target:
        return _dsn(target)
    return Redacted(target)  # a path (sqlite) or a name: nothing secret in it


def redact(target: str) -> str:
    """*target* (a URI, a libpq ``key=value`` DSN or a path) with every credential as ``***``.

    >>> redact("postgresql://app:S3/cr?t@db/x")
    'postgresql://app:***@db/x'
    >>> redact(r"host=db password=abc\\ def dbname=x")
    'host=db password=*** dbname=x'
    >>> redact("postgresql://u:pw@[::1/db")
    'postgresql://<redacted>'
    """
    return parse(target).shown


def scrub(message: str, target: str) -> str:
    """*message* (a driver's error text about *target*) with the target's secrets as ``***``.

    When *target* could not be parsed its secrets are unknown, so the
    message is withheld: it might quote them.
    """
    found = parse(target)
    if not found.parsed:
        return "(the driver's message is withheld: it may quote the target, which could not be parsed)"
    for secret in sorted(set(found.secrets), key=len, reverse=True):
        message = message.replace(secret, HIDDEN)
    return message


# -- URIs --------------------------------------------------------------------


def _uri(target: str) -> Redacted:
    scheme, _, rest = target.partition("://")
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
        return Redacted(UNPARSEABLE, parsed=False)
    secrets: list[str] = []
    user = ""
    # The userinfo ends at the LAST "@": a password may hold unescaped
    # "/", "?", "#" and "@", and libpq, redis-py and PyMongo accept some.
    if "@" in rest:
        userinfo, _, rest = rest.rpartition("@")
        name, colon, password = userinfo.partition(":")
        if colon:
            secrets += [password, unquote(password)]
            # A driver may split the password where we did not (libpq ends it
            # at the first "@"), then quote a piece of it as a host or port.
            secrets += [p for p in re.split(r"[@/?#:]", password) if len(p) >= _PIECE]
            user = f"{name}:{HIDDEN}@"
        else:
            user = f"{name}@"
    hosts, tail = _split_at(rest, "/?#")
    if not all(_HOST.fullmatch(host) for host in hosts.split(",")):
        return Redacted(f"{scheme}://{UNPARSEABLE}", secrets, parsed=False)
    path, query, fragment = _path_query_fragment(tail)
    if query is not None:
        query = _redact_query(query, secrets)
    shown = f"{scheme}://{user}{hosts}{path}"
    if query is not None:
        shown += f"?{query}"
    if fragment is not None:
        secrets += [fragment, unquote(fragment)]
        shown += f"#{HIDDEN}"
    return Redacted(shown, [s for s in secrets if s])


def _split_at(text: str, stops: str) -> tuple[str, str]:
    """*text* split before the first of *stops*."""
    for i, char in enumerate(text):
        if char in stops:
            return text[:i], text[i:]
    return text, ""


def _path_query_fragment(tail: str) -> tuple[str, str | None, str | None]:
    rest, hash_, fragment = tail.partition("#")
    path, question, query = rest.partition("?")
    return path, (query if question else None), (fragment if hash_ else None)


def _redact_query(query: str, secrets: list[str]) -> str:
    pairs = []
    for pair in re.split(r"[&;]", query):
        key, eq, value = pair.partition("=")
        if not eq:
            pairs.append(pair)
        elif is_secret(key):
            secrets += [value, unquote(value)]
            pairs.append(f"{key}={HIDDEN}")
        elif unquote(key).lower() in _NESTED:
            pairs.append(f"{key}={_redact_properties(value, secrets)}")
        else:
            pairs.append(pair)
    return "&".join(pairs)


def _redact_properties(value: str, secrets: list[str]) -> str:
    """``KEY:VALUE,KEY:VALUE`` (authMechanismProperties) with secret values hidden."""
    shown = []
    for prop in re.split(r",|%2[Cc]", value):
        key, colon, inner = _colon(prop)
        if colon and is_secret(key):
            secrets += [inner, unquote(inner)]
            shown.append(f"{key}:{HIDDEN}")
        else:
            shown.append(prop)
    return ",".join(shown)


def _colon(prop: str) -> tuple[str, str, str]:
    match = re.search(r":|%3[Aa]", prop)
    if match is None:
        return prop, "", ""
    return prop[: match.start()], ":", prop[match.end() :]


# -- libpq key=value DSNs ----------------------------------------------------

# key, "=", then a single-quoted value (backslash escapes) or a run of
# non-space characters in which a backslash escapes the next one -- libpq's
# own conninfo rules (conninfo_parse in fe-connect.c).
_PAIR = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*('(?:[^'\\]|\\.)*'|(?:[^\s'\\]|\\.)+)")


def _dsn(target: str) -> Redacted:
    pos, shown, secrets = 0, [], []
    while pos < len(target):
        if target[pos:].strip() == "":
            break
        match = _PAIR.match(target, pos)
        if match is None:
            # Not libpq syntax we can follow: show nothing rather than guess.
            return Redacted(UNPARSEABLE, parsed=False)
        key, value = match.group(1), match.group(2)
        if is_secret(key):
            secrets += [value, _unescape(value)]
            shown.append(f"{key}={HIDDEN}")
        else:
            shown.append(f"{key}={value}")
        pos = match.end()
    return Redacted(" ".join(shown), [s for s in secrets if s])


def _unescape(value: str) -> str:
    if value.startswith("'") and value.endswith("'"):
        value = value[1:-1]
    return re.sub(r"\\(.)", r"\1", value)
