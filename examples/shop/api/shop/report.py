"""The nightly report, a cron job (skipped in staging)."""

print("report written")
