"""CSV cells that a spreadsheet cannot run: formula injection neutralised and undone.

Outsiders control names and text (an email display name, an SMS body), and
Excel or LibreOffice treat a cell that starts with =, +, -, @, a tab or a
carriage return as a formula (`=HYPERLINK(...)`, DDE). As OWASP recommends,
such a cell is written with a leading single quote, which spreadsheets show
as "text" and hide; our own importer takes the quote off again, so an
export imports back to the same values.
"""

from __future__ import annotations

TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(cell: str) -> str:
    return "'" + cell if cell.startswith(TRIGGERS) else cell


def restore(cell: str) -> str:
    """The value `neutralise` was given: only a quote it could have added is removed."""
    return cell[1:] if cell.startswith("'") and cell[1:].startswith(TRIGGERS) else cell
