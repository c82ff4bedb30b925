"""The lean HTTP/1.1 client's checks that need no server."""

from __future__ import annotations

import pytest

from gateway.backends.lean_client import HTTP1Pool


async def test_headers_with_line_breaks_are_refused():
    with pytest.raises(ValueError, match="invalid HTTP header"):
        HTTP1Pool("127.0.0.1", 1, headers=[("x-bad", "a\r\nhost: evil")])
