"""The agent console: server-rendered pages over the same stores as the API."""
