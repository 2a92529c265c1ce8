"""Import, export and demo data."""
