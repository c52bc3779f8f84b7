"""How much of a request head the gateway takes before it refuses: pure counting, no I/O.

A request head (request line and header fields) is the part of HTTP a peer sends before anything
can check who it is, so it is bounded the way nginx bounds it (`large_client_header_buffers`):
a request target over `max_url` bytes is refused with 414, a head over `max_head` bytes in
all, or more than `max_headers` of them, with 431 — as soon as the count crosses the limit, not
after the rest arrived.

httptools hands the target over in pieces as they arrive (`on_url`) but keeps a header field to
itself until it is complete (`on_header`), so a field that never ends is invisible to its
callbacks. `HeadBudget` therefore counts two ways and refuses when either crosses the limit:
exactly, from the callbacks, and by the bytes of every read that arrived while the head was still
incomplete. The second undercounts only the read in which the head began (at most one read of
256 KiB), so the parser never holds more than the limit plus one read.
"""

from __future__ import annotations

# The request line and the blank line around the fields (method, version, CRLFs): a rough,
# constant allowance so the limits are about the parts a peer can make large.
_LINE_OVERHEAD = 64


class HeadRejected(Exception):
    """The head crossed a limit: answer `status` with `text`, then close."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


class HeadBudget:
    """The size of the request head being parsed, against the gateway's limits."""

    __slots__ = ("count", "exact", "max_head", "max_headers", "max_url", "streamed", "url")

    def __init__(self, max_url: int, max_head: int, max_headers: int) -> None:
        self.max_url = max_url
        self.max_head = max_head
        self.max_headers = max_headers
        self.url = 0
        self.exact = 0
        self.streamed = 0
        self.count = 0

    def reset(self) -> None:
        """A new request head begins."""
        self.url = self.exact = self.streamed = self.count = 0

    def add_url(self, size: int) -> None:
        self.url += size
        self.exact += size
        if self.url > self.max_url:
            raise HeadRejected(414, f"the request target is longer than the limit of {self.max_url} bytes "
                                    "(SKYLIFT_WEB_MAX_URL on the server)")

    def add_header(self, name: bytes, value: bytes) -> None:
        self.count += 1
        self.exact += len(name) + len(value) + 4  # ": " and CRLF
        if self.count > self.max_headers:
            raise HeadRejected(431, f"the request has more than {self.max_headers} header fields "
                                    "(SKYLIFT_WEB_MAX_HEADERS on the server)")
        self._check()

    def add_read(self, size: int) -> None:
        """A whole read arrived while the head (begun in an earlier read) is still incomplete."""
        self.streamed += size
        self._check()

    @property
    def size(self) -> int:
        return max(self.exact + _LINE_OVERHEAD, self.streamed)

    def _check(self) -> None:
        if self.size > self.max_head:
            raise HeadRejected(431, f"the request head (request line and header fields) is larger than the limit "
                                    f"of {self.max_head} bytes (SKYLIFT_WEB_MAX_HEAD on the server)")
