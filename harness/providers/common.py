"""What every provider shares: the default tenants (with their tokens and
account ids), the tight limits of the 'limited' tenant, and the state root.
A neutral module, so that no provider imports another."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from ..components import SIGNAL_ROLES, by_role
from ..target import DEFAULT_LIMITS, Alerting, Durability, Tenant

# tenants every platform stackproof builds has; 'limited' has deliberately low
# ingestion limits. The account id is the logs store's numeric tenant
# (VictoriaLogs' AccountID), fixed and non-zero: 0 is the store's "no tenant"
DEFAULT_TENANTS = (("tenant-a", "user", 1), ("tenant-b", "user", 2), ("tenant-limited", "limited", 3),
                   ("stackproof-system", "system", 4))


def new_tenants() -> list[Tenant]:
    """The default tenants, each with a fresh random token."""
    return [Tenant(n, secrets.token_urlsafe(32), role, account) for n, role, account in DEFAULT_TENANTS]


# per component name: runtime overrides of the 'limited' tenant (VictoriaLogs
# has no per-tenant limits, so only the metrics store has an entry)
LIMITED_OVERRIDES = {
    "cortex": {"ingestion_rate": DEFAULT_LIMITS["limited_metrics_burst_samples"],
               "ingestion_burst_size": DEFAULT_LIMITS["limited_metrics_burst_samples"]},
}


def limited_overrides(tenants: list[Tenant]) -> dict[str, dict]:
    """{component: {tenant: limits}} for every tenant with role 'limited'."""
    return {comp: {t.name: dict(limits) for t in tenants if t.role == "limited"}
            for comp, limits in LIMITED_OVERRIDES.items()}


def declared_durability() -> dict[str, Durability]:
    """What each signal's store declares (the durability suite proves it): the
    seconds of acknowledged writes a kill -9 may lose as the platform configures
    the store, and whether its data is in object storage (else on its volume)."""
    return {signal: Durability(by_role(role).crash_loss_seconds, by_role(role).uses_bucket)
            for signal, role in SIGNAL_ROLES.items()}


# what the platforms stackproof builds offer for alerting: the metrics store's ruler and
# Alertmanager, log rules per tenant, and (the receiver on this machine's loopback) a webhook
ALERTING_CAPABILITIES = ("alerting", "log-alerting", "alerting-webhook")


def declared_alerting() -> Alerting:
    """The rules and Alertmanager intervals of the platforms stackproof builds: each the
    slower of the metrics store's ruler and the logs rule evaluator, which declare them."""
    from ..components import LOGS_RULER, METRICS_STORE
    declared = [by_role(METRICS_STORE).alerting, by_role(LOGS_RULER).alerting]
    keys = {k for d in declared for k in d}
    return Alerting(logs_rules_path=by_role(LOGS_RULER).reads_path,
                    **{k: float(max(d.get(k, 0) for d in declared)) for k in keys})


def declared_otlp() -> dict:
    """Target keywords of what the metrics store declares of OTLP: the resource attributes
    it promotes to labels (the OTLP suite proves them)."""
    from ..components import METRICS_STORE
    return {"metrics_otlp_promoted": list(by_role(METRICS_STORE).otlp_promoted)}


def state_root() -> Path:
    return Path(os.environ.get("STACKPROOF_STATE") or Path.home() / ".local" / "state" / "stackproof")
