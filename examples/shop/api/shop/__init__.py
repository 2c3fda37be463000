"""The example shop's backend: an API, a migration and a nightly report (standard library only)."""
