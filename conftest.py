"""Root plugin registration for a stackproof checkout.

An installed stackproof registers its pytest plugin through the ``pytest11``
entry point; from a bare checkout (not installed, or with plugin autoload
disabled) this file registers the same plugins, once."""

import os
from importlib.metadata import entry_points


def _autoloaded(name: str) -> bool:
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        return False
    return any(ep.name == name for ep in entry_points(group="pytest11"))


pytest_plugins = [mod for name, mod in (("stackproof", "fixtures.plugin"), ("stackproof-reports", "reports.plugin"))
                  if not _autoloaded(name)]
