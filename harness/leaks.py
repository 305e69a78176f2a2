"""The one scan for leaked secrets, used by ``stackproof run`` over its results
and by the security suite over logs and reports: which files hold a tenant's
token or the object storage's secret key. It names the file and whose secret
it holds, never the secret."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from .target import Target


def secrets_of(target: Target) -> dict[str, bytes]:
    """Whose secret -> the secret: every tenant's token, and the object storage key if published."""
    out = {f"tenant {t.name}'s token": t.token.encode() for t in target.tenants}
    key = (target.object_storage or {}).get("secret_access_key")
    if key:
        out["the object storage secret key"] = key.encode()
    return out


def find_leaks(files: Iterable[Path], secrets: dict[str, bytes]) -> list[str]:
    """``"<file> holds <whose secret>"`` for every file that holds one, in file order."""
    leaks = []
    for f in files:
        data = Path(f).read_bytes()
        leaks += [f"{f} holds {name}" for name, secret in secrets.items() if secret in data]
    return leaks
