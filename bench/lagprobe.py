"""When was each message accepted and applied? A separate process that records, with the
wall-clock time of arrival, Redis keyspace notifications for conversations' inboxes.

The webhook's ingest script appends an entry to ``<prefix>c:{conv}:inbox`` (``rpush``) and the
drain's apply script pops it (``lpop``) in the same atomic step that commits the message to its
session; Redis publishes each notification at that moment. An inbox is first in, first out, so
the k-th ``lpop`` of a conversation applied its k-th entry, which is its k-th inbound message in
the order the sessions store them; that message's ``timestamp`` is when the webhook accepted it.
Both are wall-clock times of this machine.

The probe only reads its socket into memory, at most about once a millisecond, and timestamps
each read; parsing happens after the run (``parse``), so it costs the loaded machine little. A
notification read late counts as late: the error (about a millisecond, more when the probe waits
for a CPU) can only lengthen the measured lag.

Run: ``python -m bench.lagprobe HOST PORT PATTERN OUTFILE``; SIGTERM writes OUTFILE and exits.
"""

from __future__ import annotations

import bisect
import re
import signal
import socket
import struct
import sys
import time
from collections import defaultdict
from pathlib import Path
from types import FrameType

_HEADER = struct.Struct("<dI")


def _command(*parts: str) -> bytes:
    out = [f"*{len(parts)}\r\n".encode()]
    for part in parts:
        data = part.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def main(argv: list[str]) -> int:
    host, port, pattern, outfile = argv[0], int(argv[1]), argv[2], Path(argv[3])
    sock = socket.create_connection((host, port))
    sock.sendall(_command("PSUBSCRIBE", pattern))
    chunks: list[tuple[float, bytes]] = []
    running = True

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal running
        running = False
        sock.shutdown(socket.SHUT_RDWR)

    signal.signal(signal.SIGTERM, stop)
    # The subscription's confirmation tells the parent the probe is listening.
    first = sock.recv(1 << 16)
    chunks.append((time.time(), first))
    Path(str(outfile) + ".ready").touch()
    while running:
        try:
            data = sock.recv(1 << 20)
        except OSError:
            break
        if not data:
            break
        chunks.append((time.time(), data))
        # Let notifications gather: one read per millisecond or so instead of one per message
        # keeps the probe cheap, and adds at most that to a measured lag.
        time.sleep(0.001)
    with outfile.open("wb") as out:
        for at, data in chunks:
            out.write(_HEADER.pack(at, len(data)))
            out.write(data)
    return 0


def parse(path: Path, key_prefix: str) -> dict[str, dict[str, list[float]]]:
    """Arrival times of the inbox notifications: conversation -> event -> times, in order."""
    raw = path.read_bytes()
    buffer = bytearray()
    ends: list[int] = []
    times: list[float] = []
    offset = 0
    while offset < len(raw):
        at, size = _HEADER.unpack_from(raw, offset)
        offset += _HEADER.size
        buffer += raw[offset : offset + size]
        offset += size
        ends.append(len(buffer))
        times.append(at)
    channel = re.escape(f"__keyspace@0__:{key_prefix}c:{{".encode())
    found = re.compile(rb"\r\n" + channel + rb"([^\r]+)\}:inbox\r\n\$\d+\r\n(\w+)\r\n")
    events: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for match in found.finditer(buffer):
        # A notification split over two reads arrived with the second one.
        chunk = bisect.bisect_left(ends, match.end())
        events[match.group(1).decode()][match.group(2).decode()].append(times[chunk])
    return events


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
