"""Small but structurally real media samples for the sniffing tests: MPEG audio frames, ADTS frames, Ogg pages,
and the smallest real GIF, WebP, FLAC and WAV files (or their full headers)."""

from __future__ import annotations

import base64
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


# The well-known 1x1 images (a transparent GIF; lossless and lossy WebP as browsers' feature tests use them).
GIF_1X1 = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
WEBP_LOSSLESS_1X1 = base64.b64decode("UklGRhoAAABXRUJQVlA4TA0AAAAvAAAAEAcQERGIiP4HAA==")
WEBP_LOSSY_1X1 = base64.b64decode("UklGRiIAAABXRUJQVlA4IBYAAAAwAQCdASoBAAEADsD+JaQAA3AAAAAA")


def gif_without_extensions() -> bytes:
    """A 1x1 GIF87a with no colour table: the image descriptor comes right after the screen descriptor."""
    screen = b"GIF87a" + struct.pack("<HHBBB", 1, 1, 0, 0, 0)
    image = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0)
    return screen + image + b"\x02\x02\x44\x01\x00\x3b"  # LZW code size 2, one data sub-block, the trailer


def webp_extended() -> bytes:
    """The start of an extended WebP (VP8X: canvas 1x1, no features), as tools write animated or alpha ones."""
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\0\0\0\0" + (0).to_bytes(3, "little") + (0).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", 4 + len(vp8x)) + b"WEBP" + vp8x


def flac_header() -> bytes:
    """ "fLaC" and its STREAMINFO block (last metadata block): 4096-sample blocks, 44.1 kHz, stereo, 16 bits."""
    rate_channels_bits = (44100 << 44) | (1 << 41) | (15 << 36)  # 20 bits rate, 3 bits channels-1, 5 bits bps-1
    info = struct.pack(">HH", 4096, 4096) + b"\0" * 6 + rate_channels_bits.to_bytes(8, "big") + b"\0" * 16
    return b"fLaC" + b"\x80" + len(info).to_bytes(3, "big") + info


def wav_header(*chunks_before_fmt: bytes) -> bytes:
    """A PCM WAV's header (8 kHz mono 16-bit) and an empty data chunk; `chunks_before_fmt` (whole chunks, such as
    a JUNK or LIST chunk) come before "fmt "."""
    fmt = b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, 8000, 16000, 2, 16)
    body = b"WAVE" + b"".join(chunks_before_fmt) + fmt + b"data" + struct.pack("<I", 0)
    return b"RIFF" + struct.pack("<I", len(body)) + body


# Each sample above with the type sniffing must give it: checked among every format (test_local_files) and beside
# text that starts with the same magic numbers (test_hostile_files).
REAL_SAMPLES: list[tuple[str, bytes]] = [
    ("image/gif", GIF_1X1),
    ("image/gif", gif_without_extensions()),
    ("image/webp", WEBP_LOSSY_1X1),
    ("image/webp", WEBP_LOSSLESS_1X1),
    ("image/webp", webp_extended()),
    ("audio/mpeg", mp3_frames()),  # MPEG-1 layer III, 128 kbit/s, 44.1 kHz
    ("audio/aac", adts_frames()),  # ADTS, 44.1 kHz
    ("audio/wav", wav_header()),
    ("audio/ogg", ogg_page(b"\x01vorbis" + b"\0" * 22)),
    ("audio/flac", flac_header()),
]
