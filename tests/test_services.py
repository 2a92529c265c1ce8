"""The end-of-run note on skipped services counts only skips for a missing service."""

from tests.support.services import summary_lines


def test_the_note_counts_skips_per_missing_service() -> None:
    reasons = [
        "Skipped: Dovecot not available: not installed (apt-get install dovecot-imapd)",
        "Skipped: Dovecot not available: failed to start: port in use",
        "Skipped: only meaningful on PostgreSQL",
    ]
    assert summary_lines(reasons) == [
        "2 test(s) skipped: Dovecot is missing; install it with: apt-get install -y dovecot-imapd"
    ]
    assert summary_lines(reasons[2:]) == []
