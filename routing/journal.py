"""`routing.journal`, the request journal's documented path for operators (docs/api.md) and
Celery task bodies: it lives in `routing.pipeline.journal` now."""

from routing.pipeline.journal import (
    journal_pending,
    journal_quarantined,
    journal_sweep,
)

__all__ = ["journal_pending", "journal_quarantined", "journal_sweep"]
