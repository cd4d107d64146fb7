"""`make fuzz`: schemathesis over the OpenAPI documents of ingest, matcher and notifier as processes."""
