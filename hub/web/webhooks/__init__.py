"""Provider webhooks, mounted from the channel registry (see mount.py)."""
