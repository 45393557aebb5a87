"""The request log's lines as a test reads them: JSON, found by request id."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from gateway.observe.logs import JsonFormatter


def request_lines(caplog: pytest.LogCaptureFixture, request_id: str) -> list[dict[str, Any]]:
    """The JSON request lines logged under this request id (the line follows the response)."""
    formatter = JsonFormatter()
    deadline = time.monotonic() + 10
    while True:
        lines = [
            json.loads(formatter.format(record))
            for record in caplog.records
            if record.name == "gateway.requests"
        ]
        found = [line for line in lines if line["request_id"] == request_id]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.02)
