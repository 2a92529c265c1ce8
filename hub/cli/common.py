"""What every command module shares: the one-line failure and the async runner.

Kept apart from main.py, which imports the command modules: were these in
main.py, each command module would import main back (an import circle).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


class CliError(Exception):
    """A failure with a one-line reason for the user; exit code 1."""


def run_async(coro: Coroutine[Any, Any, int | None]) -> int:
    """Run a command's coroutine; its result is the exit code."""
    return asyncio.run(coro) or 0
