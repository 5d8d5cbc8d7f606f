"""Small but structurally real audio samples for the sniffing tests: MPEG audio frames, ADTS frames, Ogg pages."""

from __future__ import annotations

import struct


def mp3_frames(count: int = 2) -> bytes:
    """MPEG-1 layer III frames, 128 kbit/s at 44.1 kHz: 417 bytes each (a header, then silence)."""
    return (b"\xff\xfb\x90\x64" + b"\0" * 413) * count


def adts_frames(count: int = 2) -> bytes:
    """ADTS (AAC) frames at 44.1 kHz, 16 bytes each."""
    return (b"\xff\xf1\x50\x80\x02\x1f\xfc" + b"\0" * 9) * count


def ogg_crc(data: bytes) -> int:
    """Ogg's CRC-32 (polynomial 0x04C11DB7, not reflected), written out bit by bit as the spec gives it."""
    crc = 0
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7 if crc & 0x80000000 else crc << 1) & 0xFFFFFFFF
    return crc


def ogg_page(packet: bytes, *, header_type: int = 0x02, sequence: int = 0) -> bytes:
    """One Ogg page holding `packet` (under 255 bytes), beginning-of-stream by default, with its checksum."""
    assert len(packet) < 255
    header = b"OggS\x00" + bytes([header_type]) + struct.pack("<qII", 0, 0x1234, sequence)
    segments = bytes([1, len(packet)])
    page = header + b"\0\0\0\0" + segments + packet
    return page[:22] + struct.pack("<I", ogg_crc(page)) + page[26:]
