import pytest

# The support library's asserts explain themselves like a test's own: rewrite them too (this
# must come before anything imports it, and the tests package is imported first).
pytest.register_assert_rewrite("tests.support")
