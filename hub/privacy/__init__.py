"""Privacy: the audit log, subject access export, erasure with a suppression list, retention."""
