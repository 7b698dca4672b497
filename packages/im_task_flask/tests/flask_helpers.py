"""What the Flask adapter tests import by name: the secret they are configured with, and the shared HTTP client."""

from __future__ import annotations

from im_task_testsupport.raw_http import Client, Reply

__all__ = ["TEST_SECRET", "Client", "Reply"]

#: The secret every test is configured with (the conftest configures it).
TEST_SECRET = "flask-test-secret-0123456789abcdef"
