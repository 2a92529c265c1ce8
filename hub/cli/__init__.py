"""The `crmhub` command: the entry point, above web and core."""
