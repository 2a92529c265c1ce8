"""crmhub core: storage, identity matching, the ingest pipeline and the HTTP face."""
