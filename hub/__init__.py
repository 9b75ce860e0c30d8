"""Hub: ingest, storage, scoring, API and dashboard (built by the hub issues)."""
