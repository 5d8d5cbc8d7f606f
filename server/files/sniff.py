"""Recognising image, video and audio files by their first bytes, and nothing else.

A local file is sent to a model only if it sniffs as media, so a false positive leaks a file: text must never
pass. Only magic numbers that text cannot start with (binary bytes) are taken alone; where the magic is
printable ("GIF89a", "fLaC", "RIFF....WAVE", "....ftypisom"), the structure right after it must hold too, and
each such check needs bytes no text has (a NUL, a byte of 0x80 or more): a GIF's first block, FLAC's
STREAMINFO header, a WAV's "fmt " chunk, a WebP's VP8 header, a sane ftyp box size. MPEG audio and ADTS need
two consecutive valid frames (a lone sync word is two bytes any text can start with, and the UTF-16 byte-order
mark FF FE is one), an ID3 tag needs a well-formed header, an Ogg stream a complete first page with a valid
checksum and a known codec. Data starting with a text byte-order mark is refused first.
"""

from __future__ import annotations

SNIFF_BYTES = 16 * 1024  # room for two of the largest MPEG audio or ADTS frames (8 KiB at most)

# The file extension for each MIME type sniff_mime can answer (used to name uploads and downloads).
EXTENSIONS: dict[str, str] = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/gif": ".gif",
    "image/webp": ".webp",
    "image/bmp": ".bmp",
    "image/tiff": ".tiff",
    "image/heic": ".heic",
    "image/avif": ".avif",
    "video/mp4": ".mp4",
    "video/quicktime": ".mov",
    "video/webm": ".webm",
    "video/x-matroska": ".mkv",
    "video/ogg": ".ogv",
    "audio/mpeg": ".mp3",
    "audio/aac": ".aac",
    "audio/wav": ".wav",
    "audio/ogg": ".ogg",
    "audio/flac": ".flac",
    "audio/mp4": ".m4a",
}

# UTF-32 first: its little-endian mark begins with UTF-16's.
_TEXT_BOMS = (b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff", b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")


def sniff_mime(head: bytes) -> str | None:
    """The MIME type of an image, video or audio file from its first bytes, or None for anything else."""
    if head.startswith(_TEXT_BOMS):
        return None
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif" if _is_gif(head) else None
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "image/webp" if _is_webp(head) else None
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return "audio/wav" if _is_wave(head) else None
    if head.startswith(b"BM") and head[6:10] == b"\0\0\0\0" and head[14:18] in _BMP_DIB_SIZES:
        return "image/bmp"
    if head[:4] in (b"II*\0", b"MM\0*"):
        return "image/tiff"
    if head[4:8] == b"ftyp":
        return _sniff_ftyp(head)
    if head.startswith(b"\x1a\x45\xdf\xa3"):  # EBML: the DocType says which
        if b"webm" in head[:64]:
            return "video/webm"
        if b"matroska" in head[:64]:
            return "video/x-matroska"
        return None
    if head.startswith(b"OggS"):
        return _sniff_ogg(head)
    if head.startswith(b"fLaC"):
        # the first metadata block is always STREAMINFO (type 0), 34 bytes long
        return "audio/flac" if head[4:5] in (b"\x00", b"\x80") and head[5:8] == b"\0\0\x22" else None
    if head.startswith(b"ID3"):
        return "audio/mpeg" if _is_id3_tag(head) else None
    return _sniff_frames(head)


# "BM" alone is too weak (text can start so): also require zero reserved bytes and a known DIB header size.
_BMP_DIB_SIZES = frozenset(n.to_bytes(4, "little") for n in (12, 16, 40, 52, 56, 64, 108, 124))
_HEIC_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_M4A_BRANDS = frozenset({b"M4A ", b"M4B ", b"M4P "})
_MP4_BRANDS = frozenset(
    {b"isom", b"iso2", b"iso4", b"iso5", b"iso6", b"mp41", b"mp42", b"avc1", b"dash", b"M4V ", b"MSNV", b"f4v "}
)


_MAX_FTYP_BYTES = 1024  # 250 compatible brands; any printable first four bytes make a size of 150 MB or more


def _sniff_ftyp(head: bytes) -> str | None:
    """ISO base media (MP4, MOV, M4A, HEIC, AVIF): the major brand, then the compatible brands."""
    size = int.from_bytes(head[:4], "big")
    if not 16 <= size <= _MAX_FTYP_BYTES or size % 4:  # 8 bytes of box header, 2 brand fields, whole brands
        return None
    end = min(len(head), size)
    brands = [head[8:12]] + [head[i : i + 4] for i in range(16, end - 3, 4)]
    if brands[0] in _AVIF_BRANDS or (brands[0] in _HEIC_BRANDS and _AVIF_BRANDS.intersection(brands)):
        return "image/avif"
    if brands[0] in _HEIC_BRANDS:
        return "image/heic"
    if brands[0] in _M4A_BRANDS:
        return "audio/mp4"
    if brands[0] == b"qt  ":
        return "video/quicktime"
    if _MP4_BRANDS.intersection(brands) or brands[0].startswith(b"3g"):
        return "video/mp4"
    return None


# ---- GIF, WebP, WAV -------------------------------------------------------------------------------------------

_GIF_LABELS = frozenset({0xF9, 0xFE, 0x01, 0xFF})  # graphic control, comment, plain text, application


def _color_table(packed: int) -> int:
    """The size of the colour table a GIF descriptor's packed byte announces (none without its top bit)."""
    return 3 << ((packed & 7) + 1) if packed & 0x80 else 0


def _is_gif(head: bytes) -> bool:
    """After the screen descriptor (and its colour table), a known extension or an image descriptor followed
    by an LZW code size of 2-8: the label bytes and code sizes are control or non-ASCII bytes."""
    if len(head) < 13:
        return False
    at = 13 + _color_table(head[10])
    if head[at : at + 1] == b"\x21":
        return len(head) > at + 1 and head[at + 1] in _GIF_LABELS
    if head[at : at + 1] == b"\x2c" and len(head) >= at + 10:
        code_at = at + 10 + _color_table(head[at + 9])
        return len(head) > code_at and 2 <= head[code_at] <= 8
    return False


def _is_webp(head: bytes) -> bool:
    """The first chunk is a lossy (VP8: its start code), lossless (VP8L: its signature) or extended (VP8X:
    10 bytes long) bitstream header."""
    kind = head[12:16]
    if kind == b"VP8 ":
        return head[23:26] == b"\x9d\x01\x2a"
    if kind == b"VP8L":
        return head[20:21] == b"\x2f"
    return kind == b"VP8X" and head[16:20] == b"\x0a\0\0\0"


def _is_wave(head: bytes) -> bool:
    """A "fmt " chunk among the first chunks, of a sane size, with 1-64 channels and a sample rate: a size and a
    channel count that text cannot spell (they need NUL bytes)."""
    at = 12
    while at + 8 <= len(head):
        kind, size = head[at : at + 4], int.from_bytes(head[at + 4 : at + 8], "little")
        if kind == b"fmt ":
            fmt = head[at + 8 : at + 8 + size]
            if not 16 <= size <= 1024 or len(fmt) < 16:
                return False
            channels, rate = int.from_bytes(fmt[2:4], "little"), int.from_bytes(fmt[4:8], "little")
            return 1 <= channels <= 64 and 1 <= rate <= 1_000_000
        at += 8 + size + (size & 1)  # chunks are padded to an even size
    return False


# ---- ID3 ------------------------------------------------------------------------------------------------------

# Flag bits each ID3v2 major version defines; any other bit set means it is not a tag.
_ID3_FLAGS = {2: 0xC0, 3: 0xE0, 4: 0xF0}


def _is_id3_tag(head: bytes) -> bool:
    """A well-formed ID3v2 header ("ID3", version 2-4, known flags, a 28-bit "syncsafe" size), and after it a
    frame id, padding or the end of the data."""
    if len(head) < 10:
        return False
    version, revision, flags, size = head[3], head[4], head[5], head[6:10]
    if version not in _ID3_FLAGS or revision == 0xFF or flags & ~_ID3_FLAGS[version] or any(b & 0x80 for b in size):
        return False
    if flags & 0x40:  # an extended header comes first: its layout differs per version, so stop here
        return True
    frame_id = head[10 : 10 + (3 if version == 2 else 4)]
    return all(48 <= b <= 57 or 65 <= b <= 90 for b in frame_id) or not frame_id.strip(b"\0")


# ---- Ogg ------------------------------------------------------------------------------------------------------

_OGG_AUDIO = (b"\x01vorbis", b"OpusHead", b"Speex   ", b"\x7fFLAC")


def _ogg_crc_table() -> tuple[int, ...]:
    table = []
    for n in range(256):
        crc = n << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7 if crc & 0x80000000 else crc << 1) & 0xFFFFFFFF
        table.append(crc)
    return tuple(table)


_OGG_CRC = _ogg_crc_table()


def _ogg_crc(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _OGG_CRC[(crc >> 24) ^ byte]
    return crc


def _sniff_ogg(head: bytes) -> str | None:
    """The first page of an Ogg stream: version 0, beginning-of-stream, sequence 0, wholly in `head` with a
    matching checksum, and its packet the header of a known codec."""
    if len(head) < 27 or head[4] != 0 or head[5] & 0x07 != 0x02 or head[5] & 0xF8 or head[18:22] != b"\0\0\0\0":
        return None
    segments = head[26]
    start = 27 + segments
    end = start + sum(head[27:start])
    if segments == 0 or end > len(head):
        return None
    if _ogg_crc(head[:22] + b"\0\0\0\0" + head[26:end]) != int.from_bytes(head[22:26], "little"):
        return None
    packet = head[start:end]
    if packet.startswith(b"\x80theora"):
        return "video/ogg"
    if packet.startswith(_OGG_AUDIO):
        return "audio/ogg"
    if packet.startswith(b"fishead\0"):  # a skeleton track first: video when a Theora header follows
        return "video/ogg" if b"\x80theora" in head else "audio/ogg"
    return None


# ---- MPEG audio and ADTS frames -------------------------------------------------------------------------------

_KBPS = {
    (3, 3): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),  # MPEG-1 layer I
    (3, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),  # MPEG-1 layer II
    (3, 1): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),  # MPEG-1 layer III
    (2, 3): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),  # MPEG-2/2.5 layer I
    (2, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),  # MPEG-2/2.5 layers II and III
}
_SAMPLE_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
_ADTS_RATES = 13  # sampling-frequency indexes 13-15 are invalid


def _sniff_frames(head: bytes) -> str | None:
    """MP3 without an ID3 tag, or raw AAC (ADTS): a valid frame header, and another right where it ends."""
    first = _mpeg_frame_length(head, 0)
    if first is not None:
        second = _mpeg_frame_length(head, first)
        # the same stream: version and layer (byte 1 but the CRC bit) and sample rate (byte 2, bits 2-3)
        if second is None or (head[first + 1] ^ head[1]) & 0xFE or (head[first + 2] ^ head[2]) & 0x0C:
            return None
        return "audio/mpeg"
    first = _adts_frame_length(head, 0)
    if first is not None:
        second = _adts_frame_length(head, first)
        return "audio/aac" if second is not None and (head[first + 2] ^ head[2]) & 0x3C == 0 else None
    return None


def _mpeg_frame_length(head: bytes, at: int) -> int | None:
    """The length of the MPEG audio frame whose header starts at `at`, or None if none does."""
    header = head[at : at + 4]
    if len(header) < 4 or header[0] != 0xFF or header[1] & 0xE0 != 0xE0:
        return None
    version, layer = (header[1] >> 3) & 0b11, (header[1] >> 1) & 0b11
    bitrate_index, rate_index, padding = header[2] >> 4, (header[2] >> 2) & 0b11, (header[2] >> 1) & 1
    if version == 0b01 or layer == 0 or bitrate_index in (0, 0xF) or rate_index == 0b11 or header[3] & 0b11 == 0b10:
        return None
    table = (3, layer) if version == 3 else (2, 3 if layer == 3 else 2)
    bitrate = _KBPS[table][bitrate_index] * 1000
    rate = _SAMPLE_RATES[version][rate_index]
    if layer == 3:  # layer I: 4-byte slots
        return (12 * bitrate // rate + padding) * 4
    per_frame = 72 if layer == 1 and version != 3 else 144  # MPEG-2/2.5 layer III frames are half as long
    return per_frame * bitrate // rate + padding


def _adts_frame_length(head: bytes, at: int) -> int | None:
    """The length of the ADTS (AAC) frame whose header starts at `at`, or None if none does."""
    header = head[at : at + 7]
    if len(header) < 7 or header[0] != 0xFF or header[1] & 0xF6 != 0xF0 or (header[2] >> 2) & 0xF >= _ADTS_RATES:
        return None
    length = ((header[3] & 0x03) << 11) | (header[4] << 3) | (header[5] >> 5)
    return length if length >= (7 if header[1] & 1 else 9) else None
