"""Kept for the Alembic migrations written before hub/store/ existed.

They name `hub.models.UTCDateTime`, and a migration must keep meaning what it
meant when it was written; new code imports `hub.store.models`.
"""

from hub.store.models import UTCDateTime

__all__ = ["UTCDateTime"]
