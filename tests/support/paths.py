"""Where the repository, the tests and their recorded fixtures are, wherever it is checked out."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
ROOT = TESTS.parent
FIXTURES = TESTS / "fixtures"
WEBHOOKS = FIXTURES / "github-webhooks"  # recorded deliveries and GitHub's schemas for them
