"""SMS segment counting: GSM-7 (with its two-septet extension table) vs UCS-2."""

from __future__ import annotations

import pytest

from channels.sms.segments import BodyTooLong, Encoding, SegmentCount, check_body, count_segments


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hallo", SegmentCount(Encoding.GSM7, 5, 1)),
        ("Grüße aus Köln, Ärger? Øre!", SegmentCount(Encoding.GSM7, 27, 1)),
        ("a" * 160, SegmentCount(Encoding.GSM7, 160, 1)),
        ("a" * 161, SegmentCount(Encoding.GSM7, 161, 2)),
        ("a" * 306, SegmentCount(Encoding.GSM7, 306, 2)),
        ("a" * 307, SegmentCount(Encoding.GSM7, 307, 3)),
        ("€", SegmentCount(Encoding.GSM7, 2, 1)),
        ("[x]{y}~|^\\", SegmentCount(Encoding.GSM7, 18, 1)),
        ("€" * 80, SegmentCount(Encoding.GSM7, 160, 1)),
        ("€" * 81, SegmentCount(Encoding.GSM7, 162, 2)),
        ("Hi 😀", SegmentCount(Encoding.UCS2, 5, 1)),  # the emoji is two UTF-16 units
        ("ł" * 70, SegmentCount(Encoding.UCS2, 70, 1)),
        ("ł" * 71, SegmentCount(Encoding.UCS2, 71, 2)),
        ("😀" * 35, SegmentCount(Encoding.UCS2, 70, 1)),
        ("😀" * 36, SegmentCount(Encoding.UCS2, 72, 2)),
        ("Zürich " + "ç" * 130, SegmentCount(Encoding.UCS2, 137, 3)),  # ç is UCS-2; Ç is GSM
    ],
)
def test_segment_count(text: str, expected: SegmentCount) -> None:
    assert count_segments(text) == expected


def test_check_body_refuses_empty_and_over_the_limit() -> None:
    assert check_body("x" * 1600, 1600).segments == 11
    with pytest.raises(BodyTooLong, match="1601 characters; at most 1600"):
        check_body("x" * 1601, 1600)
    with pytest.raises(BodyTooLong, match="empty"):
        check_body("", 1600)
