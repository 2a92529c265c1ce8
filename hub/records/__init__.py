"""Customers, identities, history, merge, teams, users and access rules."""
