"""The notifier's SQL store: one Database (engine, migrations) and a module per table family."""

from services.notifier.store.database import Database, new_id

__all__ = ["Database", "new_id"]
