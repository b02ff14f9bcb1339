"""A TCP delay line: a database "farther away" than loopback, for the benches.

The kernel here has no ``sch_netem`` (``tc qdisc add ... netem`` answers
"Specified qdisc kind is unknown"), so the round trip is added in user
space instead: a forwarder in its own process accepts on a loopback port
and relays every chunk to the real server after half the round trip, and
every answer back after the other half.  Delays are constant, so order is
kept; the forwarder's own cost (one asyncio pass per chunk, in another
process) is measured by running it with a 0 ms delay.

    with DelayLine(("127.0.0.1", 5432), rtt=0.001) as (host, port):
        ...  # connect to host:port instead

``python bench/delayline.py TARGET_HOST TARGET_PORT RTT_MS`` runs one in the
foreground and prints the port it listens on.
"""

import asyncio
import os
import selectors
import subprocess
import sys


async def _pipe(reader, writer, delay):
    loop = asyncio.get_running_loop()
    try:
        while True:
            data = await reader.read(1 << 16)
            if not data:
                break
            if delay:
                loop.call_later(delay, writer.write, data)
            else:
                writer.write(data)
        if delay:
            await asyncio.sleep(delay)
        writer.write_eof()
    except (ConnectionError, OSError):
        pass
    finally:
        await asyncio.sleep(delay)
        writer.close()


async def _serve(target_host, target_port, rtt):
    half = rtt / 2

    async def handle(reader, writer):
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(target_host, target_port), timeout=10
            )
        except (OSError, asyncio.TimeoutError):
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer, half), _pipe(up_reader, writer, half))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


def rtt_from_env():
    """The round trip (seconds) ``OFFLOAD_BENCH_RTT_MS`` asks for, or None."""
    value = os.environ.get("OFFLOAD_BENCH_RTT_MS", "").strip()
    if not value:
        return None
    rtt = float(value) / 1e3
    if not 0 <= rtt < 1:
        raise ValueError(f"OFFLOAD_BENCH_RTT_MS must be between 0 and 1000, not {value!r}")
    return rtt


class DelayLine:
    """A forwarder process adding *rtt* seconds of round trip in front of *target*."""

    def __init__(self, target, rtt):
        self.target, self.rtt = target, rtt
        self.proc = None

    def __enter__(self):
        host, port = self.target
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), host, str(port), str(self.rtt * 1e3)],
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline()
        if not line.strip().isdigit():
            self.proc.kill()
            raise RuntimeError(f"the delay line did not start: {line!r}")
        return "127.0.0.1", int(line)

    def __exit__(self, *exc_info):
        self.proc.kill()
        self.proc.wait(timeout=10)


if __name__ == "__main__":
    target_host, target_port, rtt_ms = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    # select() takes microseconds; epoll and poll round timeouts up to whole
    # milliseconds, which would turn a 0.2 ms round trip into 2 ms.
    loop = asyncio.SelectorEventLoop(selectors.SelectSelector())
    try:
        loop.run_until_complete(_serve(target_host, target_port, rtt_ms / 1e3))
    except KeyboardInterrupt:
        pass
