"""Secrets and where they must never be: the one scan for leaked secrets, the
redaction of everything the harness records, and the scan of every response
the suites receive.

- :func:`find_leaks` is the scan of files, used by ``stackproof run`` over its
  results, by the reports plugin over what a pytest run wrote last (JUnit,
  Allure, report.json) and by the security suite over the component logs: which
  files hold a tenant's token or the object storage's secret key. It names the
  file and whose secret it holds, never the secret.
- The process knows the secrets of the platforms its run provisioned or loaded
  (:func:`remember`, called by the pytest plugin for the run's target and every
  ``own_platform``; never by a client, so a stand-in target of the harness's
  own tests never turns ordinary text into a leak); :func:`redact` replaces
  each in a text with whose it is, so a check's failure message, a diff or an attachment that quotes a response
  (a platform's error page may echo the caller's token) never carries one.
- :func:`scan_response` is called by the HTTP clients on every response body
  they receive; a body that holds a known secret is a finding of the platform
  (an error page echoing the token), which :func:`take_found` hands to the
  fixture that fails the test that received it.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Iterable

from .target import Target

_lock = threading.Lock()
_known: dict[bytes, str] = {}  # secret -> whose it is ("tenant a's token")
_found: list[str] = []  # "<request> -> <status>: the response body holds <whose>"
# a secret shorter than this is not looked for: it would be found in ordinary text (a token "t" is in
# every English sentence); the platforms stackproof makes use 43-character tokens
MIN_SECRET_BYTES = 8


def secrets_of(target: Target) -> dict[str, bytes]:
    """Whose secret -> the secret: every tenant's token, and the object storage key if published
    (those of at least :data:`MIN_SECRET_BYTES`)."""
    out = {f"tenant {t.name}'s token": t.token.encode() for t in target.tenants}
    key = (target.object_storage or {}).get("secret_access_key")
    if key:
        out["the object storage secret key"] = key.encode()
    return {whose: secret for whose, secret in out.items() if len(secret) >= MIN_SECRET_BYTES}


def find_leaks(files: Iterable[Path], secrets: dict[str, bytes]) -> list[str]:
    """``"<file> holds <whose secret>"`` for every file that holds one, in file order."""
    leaks = []
    for f in files:
        data = Path(f).read_bytes()
        leaks += [f"{f} holds {name}" for name, secret in secrets.items() if secret and secret in data]
    return leaks


def files_under(*paths: str | Path | None) -> list[Path]:
    """Every file of the given files and directories (missing ones and None are left out), sorted."""
    out: list[Path] = []
    for p in paths:
        if not p:
            continue
        p = Path(p)
        if p.is_file():
            out.append(p)
        elif p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file())
    return out


def remember(target: Target) -> None:
    """Know the secrets of ``target`` in this process, for :func:`redact` and :func:`scan_response`."""
    with _lock:
        for whose, secret in secrets_of(target).items():
            _known.setdefault(secret, whose)


def known() -> dict[str, bytes]:
    """Whose secret -> the secret, of every target this process has remembered."""
    with _lock:
        return {whose: secret for secret, whose in _known.items()}


def redact(text, secrets: dict[str, bytes] | None = None):
    """``text`` (str or bytes) with every known secret (and every one of ``secrets``)
    replaced by ``<whose secret>``; anything else is returned as it is."""
    pairs = {**known(), **(secrets or {})}
    if isinstance(text, bytes):
        for whose, secret in pairs.items():
            text = text.replace(secret, f"<{whose}>".encode())
        return text
    if isinstance(text, str):
        for whose, secret in pairs.items():
            text = text.replace(secret.decode(errors="replace"), f"<{whose}>")
        return text
    return text


def holds_secret(text: str | bytes, secrets: dict[str, bytes] | None = None) -> list[str]:
    """Whose secrets ``text`` holds (known ones and ``secrets``)."""
    data = text.encode(errors="replace") if isinstance(text, str) else bytes(text)
    return [whose for whose, secret in {**known(), **(secrets or {})}.items() if secret in data]


def scan_response(what: str, body: bytes) -> None:
    """Record a finding if a response body (``what``: its request line and status) holds a known secret."""
    whose = holds_secret(body)
    if whose:
        with _lock:
            _found.extend(f"{what}: the response body holds {w}" for w in whose)


def take_found() -> list[str]:
    """The findings of :func:`scan_response` since the last call (and forget them)."""
    with _lock:
        out = list(dict.fromkeys(_found))
        _found.clear()
        return out
