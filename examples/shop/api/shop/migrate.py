"""The migration job: runs to completion before the backend stage starts."""

print("migrations applied")
