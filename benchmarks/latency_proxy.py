"""A TCP proxy on 127.0.0.1 that delays every byte by a fixed time each way: a network round trip, on one machine.

The benchmarks put it between the Cloud Tasks client and the emulator to see
how bulk and concurrent enqueueing fare when a call costs a real round trip,
as it does to Cloud Tasks (milliseconds), rather than the few microseconds of
the loopback interface. Bytes keep their order; concurrent requests on one
connection (gRPC multiplexes them over HTTP/2) are delayed alike, not one
after the other, as on a real network link.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["latency_proxy"]

_CHUNK = 64 * 1024


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Copies ``reader`` to ``writer``, each chunk ``delay`` seconds after it arrived, in order."""
    loop = asyncio.get_running_loop()
    pending: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def send() -> None:
        while True:
            due, data = await pending.get()
            if not data:
                break
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(send())
    try:
        while True:
            data = await reader.read(_CHUNK)
            pending.put_nowait((loop.time() + delay, data))
            if not data:
                break
        await sender
    except (ConnectionError, asyncio.CancelledError):
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _serve(upstream: tuple[str, int], delay: float, ready: asyncio.Future[int], stop: asyncio.Event) -> None:
    connections: set[asyncio.StreamWriter] = set()

    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.wait_for(asyncio.open_connection(*upstream), 10)
        except (OSError, asyncio.TimeoutError):
            client_writer.close()
            return
        connections.update((client_writer, server_writer))
        try:
            await asyncio.gather(_pump(client_reader, server_writer, delay), _pump(server_reader, client_writer, delay))
        finally:
            connections.difference_update((client_writer, server_writer))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    ready.set_result(server.sockets[0].getsockname()[1])
    async with server:
        await stop.wait()
        # Connections still open end with the proxy: closing them ends their pumps (end of file), then their handlers.
        for writer in list(connections):
            writer.close()
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        if others:
            await asyncio.wait(others, timeout=5)


@contextmanager
def latency_proxy(upstream: str, round_trip: float) -> Iterator[str]:
    """Runs the proxy on a thread for the ``with`` block.

    Args:
        upstream: ``"HOST:PORT"`` to forward to.
        round_trip: Seconds added to each round trip (half each way).

    Yields:
        The proxy's ``"127.0.0.1:PORT"``.
    """
    host, _, port = upstream.rpartition(":")
    loop = asyncio.new_event_loop()
    ready: asyncio.Future[int] = loop.create_future()
    stop = asyncio.Event()
    main = loop.create_task(_serve((host, int(port)), round_trip / 2, ready, stop))
    thread = threading.Thread(target=loop.run_until_complete, args=(main,), name="latency-proxy", daemon=True)
    thread.start()
    try:
        proxy_port = asyncio.run_coroutine_threadsafe(asyncio.wait_for(asyncio.shield(ready), 10), loop).result(15)
        yield f"127.0.0.1:{proxy_port}"
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=10)
        with contextlib.suppress(RuntimeError):
            loop.close()
