"""What the tests share, as a library: test beds (Docker, Kubernetes, PostgreSQL, the Action,
Chromium), the GitHub stand-in, signed webhook deliveries, the receiver in-process and as a
process, the runner's test doubles, and `eventually` for waiting on another thread or process.
Test files import from here, never from each other (`tests/test_layout.py` holds them to it).
"""
