"""The HTTP face of the hub: REST API, health checks, OpenAPI document."""
