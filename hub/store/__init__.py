"""Storage: engines, the SQLite driver, models, tables, migrations."""
