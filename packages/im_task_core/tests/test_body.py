"""Reading a request body: within the cap, never past it, and a clear refusal when it cannot be read."""

from __future__ import annotations

import io
from typing import Any

import pytest

from im_task.body import BodyTooLargeError, UnreadableBodyError, read_body


class CountingStream(io.BytesIO):
    """A body stream that counts the bytes and the calls read from it, giving at most ``per_read`` a call."""

    def __init__(self, data: bytes, per_read: int | None = None) -> None:
        super().__init__(data)
        self.per_read = per_read
        self.bytes_read = 0
        self.reads = 0

    def read(self, size: int | None = -1) -> bytes:
        """Reads, at most ``per_read`` bytes (a raw socket's short reads), and counts."""
        if self.per_read is not None and (size is None or size < 0 or size > self.per_read):
            size = self.per_read
        data = super().read(size)
        self.reads += 1
        self.bytes_read += len(data)
        return data


class FailingStream:
    """A body stream whose read fails after giving ``before`` bytes, as a server's does on a reset."""

    def __init__(self, error: BaseException, before: bytes = b"") -> None:
        self.error = error
        self.before = before

    def read(self, size: int = -1) -> bytes:
        """Gives the bytes before the failure, then raises."""
        if self.before:
            data, self.before = self.before[:size], self.before[size:]
            return data
        raise self.error


class RequestEntityTooLarge(Exception):
    """Shaped as werkzeug's: an HTTP exception whose ``code`` is 413 (raised by a Flask app's own limit)."""

    code = 413


@pytest.mark.parametrize("body", [b"abc", bytearray(b"abc"), memoryview(b"abc")])
def test_bytes_within_the_cap_are_returned_as_bytes(body: Any) -> None:
    assert read_body(body, None, 3) == b"abc"
    assert type(read_body(body, None, 3)) is bytes


def test_bytes_over_the_cap_are_too_large() -> None:
    with pytest.raises(BodyTooLargeError, match=r"4 bytes, is over max_body_size \(3 bytes\)"):
        read_body(b"abcd", None, 3)


def test_a_stream_is_read_up_to_its_content_length_only() -> None:
    stream = CountingStream(b"envelope" + b"and what follows")
    assert read_body(stream, "8", 1024) == b"envelope"
    assert stream.bytes_read == 8


def test_a_declared_length_over_the_cap_is_refused_without_reading() -> None:
    stream = CountingStream(b"x" * 5000)
    with pytest.raises(BodyTooLargeError, match=r"Content-Length, 5000 bytes, is over max_body_size \(4096"):
        read_body(stream, "5000", 4096)
    assert (stream.reads, stream.bytes_read) == (0, 0)


@pytest.mark.parametrize("declared", [None, "", "-1", "nonsense", "1e3"])
def test_without_a_usable_length_at_most_cap_plus_one_bytes_are_read(declared: str | None) -> None:
    stream = CountingStream(b"y" * 100_000)
    with pytest.raises(BodyTooLargeError, match="not read further"):
        read_body(stream, declared, 4096)
    assert stream.bytes_read == 4097


def test_without_a_length_a_body_within_the_cap_is_read_to_its_end() -> None:
    assert read_body(CountingStream(b"z" * 4096), None, 4096) == b"z" * 4096


def test_short_reads_are_read_on_until_the_declared_length() -> None:
    stream = CountingStream(b"0123456789" * 100, per_read=64)  # a raw stream: fewer bytes than asked each time
    assert read_body(stream, "1000", 4096) == b"0123456789" * 100
    assert stream.bytes_read == 1000
    assert stream.reads == 16


def test_short_reads_never_go_past_cap_plus_one() -> None:
    stream = CountingStream(b"y" * 100_000, per_read=1000)
    with pytest.raises(BodyTooLargeError):
        read_body(stream, None, 4096)
    assert stream.bytes_read == 4097


def test_a_body_shorter_than_its_content_length_is_unreadable() -> None:
    with pytest.raises(UnreadableBodyError, match="ended after 5 of the 8 bytes its Content-Length declares"):
        read_body(CountingStream(b"short"), "8", 1024)


@pytest.mark.parametrize(
    "error",
    [
        OSError("Invalid chunk header"),
        ConnectionResetError(104, "Connection reset by peer"),
        ValueError("I/O operation on closed file."),
        EOFError(),
        Exception("a framework's own disconnect error"),
    ],
)
def test_a_stream_that_raises_is_unreadable_naming_the_error(error: Exception) -> None:
    with pytest.raises(UnreadableBodyError, match=r"could not be read after 3 bytes: ") as raised:
        read_body(FailingStream(error, before=b"abc"), "10", 1024)
    assert repr(error) in str(raised.value)
    assert raised.value.__cause__ is error


def test_the_error_is_escaped_in_the_message() -> None:
    with pytest.raises(UnreadableBodyError) as raised:
        read_body(FailingStream(OSError("bad\r\nCRITICAL forged line")), None, 1024)
    assert "\n" not in str(raised.value)
    assert "\r" not in str(raised.value)


def test_a_servers_own_413_stays_too_large() -> None:
    with pytest.raises(BodyTooLargeError, match="refused the body as too large"):
        read_body(FailingStream(RequestEntityTooLarge("413 Request Entity Too Large")), None, 1024)


def test_keyboard_interrupt_is_not_swallowed() -> None:
    with pytest.raises(KeyboardInterrupt):
        read_body(FailingStream(KeyboardInterrupt()), None, 1024)


def test_a_text_stream_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="must be binary: its read\\(\\) returned str"):
        read_body(io.StringIO("text"), None, 1024)


@pytest.mark.parametrize("body", ["text", 42, None])
def test_what_is_neither_bytes_nor_a_stream_is_a_type_error(body: Any) -> None:
    with pytest.raises(TypeError, match="body must be bytes or a binary stream"):
        read_body(body, None, 1024)


@pytest.mark.parametrize("cap", [-1, 1.5, True, "1024", None])
def test_a_bad_cap_is_a_value_error(cap: Any) -> None:
    with pytest.raises(ValueError, match="cap must be a whole number of bytes >= 0"):
        read_body(b"", None, cap)
