"""uvicorn's httptools protocol with a bound on a request's head (its request line and headers).

httptools buffers a header line of any length before the app sees it, and uvicorn sets no
limit of its own, so ``ORGBILL_MAX_BODY_BYTES`` could be sidestepped by sending the bytes as
headers. A head past ``MAX_HEAD_BYTES`` is answered ``431`` in the contract's envelope and the
connection closed before it is parsed further. `orgbill serve` runs uvicorn with this protocol.
"""

from __future__ import annotations

import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# Generous for any real client (a JWT cookie and the usual headers are a few KiB); the bound
# is what one connection may make the server hold before its request is known.
MAX_HEAD_BYTES = 64 * 1024
_DRAIN_SECONDS = 5.0

_BODY = json.dumps(
    {
        "error": {
            "code": "bad_request",
            "message": f"Request line and headers exceed {MAX_HEAD_BYTES} bytes",
            "request_id": None,
            "details": None,
        }
    }
).encode()
_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: application/json\r\n"
    b"connection: close\r\n"
    b"content-length: " + str(len(_BODY)).encode() + b"\r\n\r\n" + _BODY
)


class BoundedHeadProtocol(HttpToolsProtocol):
    """Counts the bytes received while a request's head is incomplete (a body is not
    counted) and refuses past the bound, to within one read. After the refusal the rest of
    what the client sends is read and dropped for a few seconds before the connection
    closes: closing with unread bytes would reset it, and the client would never read the
    431."""

    _head_bytes = 0
    _in_head = True  # a connection starts with a request's head
    _refused = False

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._in_head:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._refuse()
                return
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._in_head, self._head_bytes = False, 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_head = True  # what follows is the next request's head
        super().on_message_complete()

    def _refuse(self) -> None:
        self._refused = True
        self.transport.write(_TOO_LARGE)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(_DRAIN_SECONDS, self.transport.close)
