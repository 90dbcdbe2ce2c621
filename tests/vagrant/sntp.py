"""A minimal SNTP server (RFC 4330) serving this host's clock, for labs on a machine without a route to public
time servers: the VM's systemd-timesyncd, pointed at it through the lab's `ntp_servers`, synchronises to it."""

from __future__ import annotations

import socket
import struct
import threading
import time

NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900-01-01 (NTP) to 1970-01-01 (Unix)
SERVER_MODE, VERSION, STRATUM = 4, 4, 2


def _timestamp(seconds: float) -> bytes:
    whole = int(seconds)
    return struct.pack("!II", whole + NTP_EPOCH_OFFSET, int((seconds - whole) * 2**32))


def reply(request: bytes, received: float) -> bytes:
    """The server's answer to a client request: in sync (leap 0), stratum 2, the client's transmit time echoed
    as origin, this host's clock as receive and transmit time."""
    poll = request[2] if len(request) > 2 else 6
    header = struct.pack("!BBbb", (VERSION << 3) | SERVER_MODE, STRATUM, poll, -20)
    root_delay_and_dispersion = struct.pack("!II", 0, 1 << 8)  # 16.16 seconds: 0 and 1/256 s
    reference = _timestamp(received)
    return (
        header
        + root_delay_and_dispersion
        + b"LOCL"
        + reference
        + request[40:48]
        + _timestamp(received)
        + _timestamp(time.time())
    )


class SntpServer:
    """Answers NTP requests on UDP `port` of every address until stopped."""

    def __init__(self, port: int = 123) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(("0.0.0.0", port))
        self.socket.settimeout(0.5)
        self.answered = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="sntp", daemon=True)

    def __enter__(self) -> SntpServer:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.socket.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                request, client = self.socket.recvfrom(512)
            except TimeoutError:
                continue
            if len(request) >= 48 and request[0] & 0x07 == 3:  # client mode
                self.socket.sendto(reply(request, time.time()), client)
                self.answered += 1
