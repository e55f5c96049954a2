"""Whether a server answers, before a command sends it anything: one TCP connection (the Hub endpoint of `push`, the
Ray cluster of `predict --engine ray`), so that an address that does not answer is one clear line, not a hang or a
half-done job."""

from __future__ import annotations

import socket


def unreachable(host: str, port: int, timeout: float) -> str | None:
    """Why no TCP connection to `host:port` opens within `timeout` seconds, or None when one does."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as error:
        return error.strerror or str(error) or type(error).__name__
    return None
