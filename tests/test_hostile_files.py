"""Hostile local files: text that looks like audio at a glance."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.files.local import FileRefusedError, read_media, sniff_mime
from tests.media_samples import adts_frames, mp3_frames, ogg_page

REG_EXPORT = (
    "Windows Registry Editor Version 5.00\r\n\r\n"
    "[HKEY_CURRENT_USER\\Software\\SimonTatham\\PuTTY\\Sessions\\prod]\r\n"
    '"ProxyPassword"="correct horse battery staple"\r\n'
)
POWERSHELL = "UserName      Password\r\n--------      --------\r\nadmin         hunter2-Sup3rSecret\r\n"

# ---- text is not audio ---------------------------------------------------------------------------------------

TEXT_THAT_LOOKED_LIKE_AUDIO = {
    # The UTF-16LE byte-order mark FF FE reads as an MPEG-1 layer I frame sync, and "W"/"U" as sane fields.
    "utf16le-reg-export": "\ufeff".encode("utf-16-le") + REG_EXPORT.encode("utf-16-le"),
    "utf16le-powershell": "\ufeff".encode("utf-16-le") + POWERSHELL.encode("utf-16-le"),
    "utf32le": "\ufeff".encode("utf-32-le") + POWERSHELL.encode("utf-32-le"),
    "utf16be": "\ufeff".encode("utf-16-be") + POWERSHELL.encode("utf-16-be"),
    "utf8-bom-then-frames": b"\xef\xbb\xbf" + mp3_frames(),
    "bom-then-real-frames": b"\xff\xfe" + mp3_frames(),
    "id3-text": b"ID3 tags to fix: artist, album, year. Password for the share: hunter2\n",
    "id3-bad-version": b"ID3\x09\x00\x00\x00\x00\x00\x00TIT2",
    "id3-unknown-flags": b"ID3\x03\x00\x1f\x00\x00\x00\x00TIT2",
    "id3-bad-size": b"ID3\x03\x00\x00\x80\x80\x80\x80TIT2",
    "id3-then-text": b"ID3\x03\x00\x00\x00\x00\x01\x00my notes: the password is hunter2",
    "oggs-text": b"OggS is the capture pattern of an Ogg page. Anyway, the password is hunter2\n",
    "ogg-bad-checksum": ogg_page(b"OpusHead" + b"\0" * 11)[:22] + b"\0\0\0\0" + ogg_page(b"OpusHead" + b"\0" * 11)[26:],
    "ogg-not-first-page": ogg_page(b"OpusHead" + b"\0" * 11, header_type=0x00, sequence=3),
    "ogg-unknown-codec": ogg_page(b"password=hunter2"),
    "ogg-cut-short": ogg_page(b"OpusHead" + b"\0" * 11)[:40],
    "one-mpeg-frame-then-text": mp3_frames(1) + b"password=hunter2, and this is not another frame header at all",
    "mpeg-header-then-text": b"\xff\xfb\x90\x64 password=hunter2",
    "two-mpeg-frames-of-different-streams": mp3_frames(1) + b"\xff\xf3\x90\x64" + b"\0" * 300,
    "one-adts-frame-then-text": adts_frames(1) + b"password=hunter2",
}


@pytest.mark.parametrize("data", TEXT_THAT_LOOKED_LIKE_AUDIO.values(), ids=TEXT_THAT_LOOKED_LIKE_AUDIO.keys())
def test_text_is_not_taken_for_audio(data: bytes) -> None:
    assert sniff_mime(data) is None


@pytest.mark.parametrize(
    ("data", "mime"),
    [
        (mp3_frames(), "audio/mpeg"),
        (mp3_frames(3), "audio/mpeg"),
        (adts_frames(), "audio/aac"),
        (b"ID3\x04\x00\x00\x00\x00\x02\x01TIT2" + b"\0" * 100, "audio/mpeg"),
        (b"ID3\x02\x00\x00\x00\x00\x00\x20TT2" + b"\0" * 20, "audio/mpeg"),
        (b"ID3\x03\x00\x00\x00\x00\x00\x00", "audio/mpeg"),  # an empty tag, nothing after it
        (ogg_page(b"\x01vorbis" + b"\0" * 22), "audio/ogg"),
        (ogg_page(b"fishead\0" + b"\0" * 56) + ogg_page(b"\x80theora" + b"\0" * 34), "video/ogg"),
    ],
)
def test_real_audio_structures_are_recognised(data: bytes, mime: str) -> None:
    assert sniff_mime(data) == mime


def test_a_utf16_registry_export_is_not_uploaded(tmp_path: Path) -> None:
    path = tmp_path / "putty.reg"
    path.write_bytes(TEXT_THAT_LOOKED_LIKE_AUDIO["utf16le-reg-export"])
    with pytest.raises(FileRefusedError, match="not an image, video or audio file") as caught:
        read_media(str(path), roots=[tmp_path], max_bytes=100_000)
    assert "horse" not in caught.value.message
