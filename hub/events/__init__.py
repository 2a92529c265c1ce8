"""Typed event kinds and the in-process bus."""
