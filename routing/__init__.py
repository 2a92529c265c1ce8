"""Decisions about inbound contacts: small named steps over plain data.

Nothing here imports `hub` or touches the database; the questions a step needs
answered go through the `RoutingContext` the hub passes in.
"""
