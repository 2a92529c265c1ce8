"""The hub side of email: mailbox runners, checkpoints, the quarantine."""
