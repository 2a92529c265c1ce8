"""Fixtures of the import, export and CLI tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture
def config(tmp_path: Path, db_url: str) -> str:
    """A config file pointing `crmhub` at the test database."""
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps({"database": {"url": db_url}}), encoding="utf-8")
    return str(path)
