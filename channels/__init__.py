"""Channel adapters: the only place where raw provider payloads exist."""
