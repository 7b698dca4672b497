"""The request body: read within ``max_body_size``, or refused as too large or unreadable.

An endpoint's body comes as bytes or as the stream of the framework's
request. :func:`read_body` reads at most the cap plus one byte of it (and
none of it when its ``Content-Length`` is already over the cap), and turns
whatever goes wrong while reading into an error the endpoint answers without
a traceback: a stream that raises (malformed chunked encoding, a connection
reset, werkzeug's ``ClientDisconnected``, Django's ``UnreadablePostError``)
or a body shorter than its ``Content-Length`` is :class:`UnreadableBodyError`
(400); a body over the cap is :class:`BodyTooLargeError` (413).

Example:
    >>> import io
    >>> read_body(io.BytesIO(b"envelope and more"), "8", cap=1024)
    b'envelope'
    >>> read_body(io.BytesIO(b"short"), "8", cap=1024)
    Traceback (most recent call last):
    ...
    im_task.errors.UnreadableBodyError: the body ended after 5 of the 8 bytes its Content-Length declares.
"""

from __future__ import annotations

from typing import IO

from im_task.errors import BodyTooLargeError, UnreadableBodyError

__all__ = ["BodyTooLargeError", "UnreadableBodyError", "read_body"]


def read_body(body: bytes | bytearray | memoryview | IO[bytes], content_length: str | None, cap: int) -> bytes:
    """Reads a request body of at most ``cap`` bytes.

    Args:
        body: The body as bytes, or a binary stream to read.
        content_length: The request's ``Content-Length`` header, if any. A
            stream is read up to it; without it (or when it is not a whole
            number >= 0), up to ``cap + 1`` bytes, enough to know the body is too large.
        cap: The largest body accepted, in bytes (``max_body_size``).

    Returns:
        The body.

    Raises:
        BodyTooLargeError: The body, or its declared length, is over ``cap``;
            nothing is read past ``cap + 1`` bytes, none when the declared length says so.
        UnreadableBodyError: The stream raised while it was read, or ended before its declared length.
        TypeError: ``body`` is not bytes nor a binary stream.
        ValueError: ``cap`` is not a whole number >= 0.
    """
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 0:
        raise ValueError(f"cap must be a whole number of bytes >= 0, not {cap!r}.")
    if isinstance(body, (bytes, bytearray, memoryview)):
        if len(body) > cap:
            raise BodyTooLargeError(f"the body, {len(body)} bytes, is over max_body_size ({cap} bytes).")
        return bytes(body)
    if not callable(getattr(body, "read", None)):
        raise TypeError(f"body must be bytes or a binary stream with read(), not {type(body).__name__}.")
    declared = _declared_length(content_length)
    if declared is not None and declared > cap:
        raise BodyTooLargeError(f"the body's Content-Length, {declared} bytes, is over max_body_size ({cap} bytes).")
    data = _read(body, cap + 1 if declared is None else declared)
    if len(data) > cap:
        raise BodyTooLargeError(f"the body is over max_body_size ({cap} bytes); it was not read further.")
    if declared is not None and len(data) < declared:
        raise UnreadableBodyError(
            f"the body ended after {len(data)} of the {declared} bytes its Content-Length declares."
        )
    return data


def _declared_length(value: str | None) -> int | None:
    """The declared length, or None when there is none worth trusting (absent, not a number, negative)."""
    try:
        length = int(value) if value else None
    except ValueError:
        return None
    return length if length is not None and length >= 0 else None  # read(-1) would read everything


def _read(stream: IO[bytes], size: int) -> bytes:
    """Reads up to ``size`` bytes: one read as a rule, more only when a stream returns less before its end."""
    data = _read_once(stream, size, 0)
    if not data or len(data) >= size:
        return data
    chunks = [data]
    got = len(data)
    while got < size:
        chunk = _read_once(stream, size - got, got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _read_once(stream: IO[bytes], size: int, got: int) -> bytes:
    try:
        chunk = stream.read(size)
    except Exception as exc:  # the framework's or the server's error: malformed chunks, a reset, a disconnect
        if getattr(exc, "code", None) == 413:  # werkzeug's RequestEntityTooLarge, from the app's own limit
            raise BodyTooLargeError(f"the server refused the body as too large: {exc!r}") from exc
        raise UnreadableBodyError(f"the body could not be read after {got} bytes: {exc!r}") from exc
    if not isinstance(chunk, (bytes, bytearray)):
        raise TypeError(f"the body stream must be binary: its read() returned {type(chunk).__name__}, not bytes.")
    return bytes(chunk)
