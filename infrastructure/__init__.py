"""Adapters: settings, PostgreSQL (event store, the view's SQL, embedded server), composition root."""
