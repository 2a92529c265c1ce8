"""Segments: saved, strictly validated customer filters (see filters.py for the shape)."""

from hub.segments.filters import SegmentFilter, parse_filter
from hub.segments.query import count, customer_ids_query, preview, stream_ids

__all__ = [
    "SegmentFilter",
    "count",
    "customer_ids_query",
    "parse_filter",
    "preview",
    "stream_ids",
]
