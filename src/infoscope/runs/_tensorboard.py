"""TensorBoard event files of scalars, written without TensorFlow or tensorboard.

An event file is a sequence of TFRecords (length, masked CRC-32C of the
length, data, masked CRC-32C of the data), each holding one serialised
``tensorflow.Event`` protocol buffer. The few fields a scalar needs are
encoded here by hand: ``Event{wall_time=1 (double), step=2 (int64),
file_version=3 (string), summary=5 (Summary)}``, ``Summary{value=1
(repeated Value)}``, ``Value{tag=1 (string), simple_value=2 (float)}``.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Iterable

__all__ = ["EventFileWriter"]


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), the checksum TFRecords use."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked(crc: int) -> int:
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # int64 as protobuf writes it: two's complement
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _length_delimited(number: int, payload: bytes) -> bytes:
    return _field(number, 2) + _varint(len(payload)) + payload


def _event(wall_time: float, step: int, body: bytes) -> bytes:
    return (
        _field(1, 1)
        + struct.pack("<d", wall_time)
        + _field(2, 0)
        + _varint(step)
        + body
    )


def _record(data: bytes) -> bytes:
    length = struct.pack("<Q", len(data))
    return (
        length
        + struct.pack("<I", _masked(crc32c(length)))
        + data
        + struct.pack("<I", _masked(crc32c(data)))
    )


class EventFileWriter:
    """Append scalar summaries to a new event file in `logdir`."""

    def __init__(self, logdir: str):
        os.makedirs(logdir, exist_ok=True)
        name = (
            f"events.out.tfevents.{time.time():.0f}.{socket.gethostname()}."
            f"{os.getpid()}.infoscope"
        )
        self.path = os.path.join(logdir, name)
        self._file = open(self.path, "ab")
        self._write(
            [_record(_event(time.time(), 0, _length_delimited(3, b"brain.Event:2")))]
        )

    def add_scalars(self, step: int, scalars: Iterable[tuple[str, float]]) -> None:
        """One event per scalar, all at `step`, flushed to the file."""
        now = time.time()
        records = []
        for tag, value in scalars:
            summary_value = (
                _length_delimited(1, tag.encode())
                + _field(2, 5)
                + struct.pack("<f", value)
            )
            summary = _length_delimited(1, summary_value)
            records.append(_record(_event(now, step, _length_delimited(5, summary))))
        self._write(records)

    def _write(self, records: list[bytes]) -> None:
        self._file.write(b"".join(records))
        self._file.flush()

    def close(self) -> None:
        """Close the file."""
        if not self._file.closed:
            self._file.close()
