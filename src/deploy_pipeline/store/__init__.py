"""What deploy-pipeline remembers, and the only place that speaks SQL: `database` (SQLite or
PostgreSQL, the only importer of psycopg), `migrations` (the schema), `state` (environments,
runs, locks, events) and `queue` (the receiver's durable delivery queue)."""
