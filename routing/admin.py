"""routing admin registrations arrive with its tables."""

from routing import (
    admin_audit,  # noqa: F401
    admin_budget,  # noqa: F401
    admin_cache,  # noqa: F401
    admin_policy,  # noqa: F401
)
