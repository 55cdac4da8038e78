"""Moved to `routing.config.cache`: this module only re-exports its names, for the modules that
still import this path (`routing.budgets` and its tests, being reworked beside this change).
Import from `routing.config.cache`, and patch names there, not here.
"""

from routing.config.cache import (
    BUILTIN_POLICY,
    MAX_AGE_S,
    SHARED_TTL_S,
    SNAPSHOT_KEY,
    VERSION_KEY,
    ConfigSnapshot,
    SharedState,
    policy_spec,
    routing_config_changed,
    routing_config_get,
    shared_forget,
    shared_read,
    version_file,
)

__all__ = [
    "BUILTIN_POLICY",
    "MAX_AGE_S",
    "SHARED_TTL_S",
    "SNAPSHOT_KEY",
    "VERSION_KEY",
    "ConfigSnapshot",
    "SharedState",
    "policy_spec",
    "routing_config_changed",
    "routing_config_get",
    "shared_forget",
    "shared_read",
    "version_file",
]
