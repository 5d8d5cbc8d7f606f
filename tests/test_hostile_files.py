"""Hostile local files: text that looks like audio at a glance or starts with a media magic number, and a folder
swapped for a symlink mid-read."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from server.files import browse
from server.files import local as local_files
from server.files.local import FileRefusedError, read_media, sniff_mime
from server.sandbox.media import sample_mp3, sample_mp4, sample_png, sample_wav, tiny_png
from tests.media_samples import REAL_SAMPLES, adts_frames, mp3_frames, ogg_page

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
        (mp3_frames(3), "audio/mpeg"),
        (b"ID3\x04\x00\x00\x00\x00\x02\x01TIT2" + b"\0" * 100, "audio/mpeg"),
        (b"ID3\x02\x00\x00\x00\x00\x00\x20TT2" + b"\0" * 20, "audio/mpeg"),
        (b"ID3\x03\x00\x00\x00\x00\x00\x00", "audio/mpeg"),  # an empty tag, nothing after it
        (ogg_page(b"fishead\0" + b"\0" * 56) + ogg_page(b"\x80theora" + b"\0" * 34), "video/ogg"),
    ],
)
def test_real_audio_structures_are_recognised(data: bytes, mime: str) -> None:
    assert sniff_mime(data) == mime


# ---- text that starts with a printable magic number is not media ---------------------------------------------

TEXT_THAT_STARTED_WITH_A_MAGIC = {
    "flac": b"fLaC is a lossless codec. The password for the archive is hunter2\n",
    "gif89a": b"GIF89a was released in 1989; GIF87a before it. The password is hunter2\n",
    "gif87a-comma": b"GIF87a notes, the password is hunter2\n",
    "gif-bang": b"GIF89a 1x1!\n password: hunter2",
    "wave": b"RIFF2024WAVE recordings: notes. The password is hunter2\n",
    "wave-fmt": b"RIFF....WAVEfmt chunk first, then data. The password is hunter2\n",
    "webp": b"RIFF....WEBPVP8 is lossy, VP8L lossless. The password is hunter2\n",
    "webp-vp8x": b"RIFF....WEBPVP8X extended. The password is hunter2\n",
    "ftyp-isom": b"see ftypisom brands: isom, iso2, mp41. The password is hunter2\n",
    "ftyp-qt": b"... ftypqt  means QuickTime. The password is hunter2\n",
    "ftyp-heic": b"tag:ftypheic mif1 heic. The password is hunter2\n",
    "ftyp-m4a": b"mp4 ftypM4A  is for audio. The password is hunter2\n",
}


@pytest.mark.parametrize("data", TEXT_THAT_STARTED_WITH_A_MAGIC.values(), ids=TEXT_THAT_STARTED_WITH_A_MAGIC.keys())
def test_text_starting_with_a_media_magic_is_not_media(data: bytes, tmp_path: Path) -> None:
    assert sniff_mime(data) is None
    path = tmp_path / "notes.gif"
    path.write_bytes(data)
    with pytest.raises(FileRefusedError, match="not an image, video or audio file") as caught:
        read_media(str(path), roots=[tmp_path], max_bytes=100_000)
    assert "hunter2" not in caught.value.message


@pytest.mark.parametrize(
    ("data", "mime"),
    [
        *((data, mime) for mime, data in REAL_SAMPLES),
        (sample_wav(), "audio/wav"),
        (sample_mp4(), "video/mp4"),
        (sample_mp3(), "audio/mpeg"),
        (sample_png(), "image/png"),
    ],
)
def test_real_media_with_those_magics_still_passes(data: bytes, mime: str) -> None:
    assert sniff_mime(data) == mime


def test_a_utf16_registry_export_is_not_uploaded(tmp_path: Path) -> None:
    path = tmp_path / "putty.reg"
    path.write_bytes(TEXT_THAT_LOOKED_LIKE_AUDIO["utf16le-reg-export"])
    with pytest.raises(FileRefusedError, match="not an image, video or audio file") as caught:
        read_media(str(path), roots=[tmp_path], max_bytes=100_000)
    assert "horse" not in caught.value.message


# ---- a folder swapped for a symlink between the check and the open -------------------------------------------


def test_a_folder_swapped_for_a_symlink_after_the_check_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The path is resolved and checked inside the root; then, before the file is opened, a folder on the way
    becomes a symlink to a folder outside the root holding a file of the same name. Opening by path would read
    the outside file (O_NOFOLLOW guards only the last component); opening each component from the root's
    descriptor refuses."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "photos").mkdir(parents=True)
    (outside).mkdir()
    inside_file = root / "photos" / "cat.png"
    inside_file.write_bytes(tiny_png())
    secret = tiny_png() + b"outside the root"
    (outside / "cat.png").write_bytes(secret)
    real_lstat, target = os.lstat, str(inside_file.resolve())
    swapped: list[bool] = []

    def swapping_lstat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        if str(path) == target and not swapped:  # the attacker wins the race right here
            (root / "photos").rename(root / "photos.old")
            (root / "photos").symlink_to(outside, target_is_directory=True)
            swapped.append(True)
        return real_lstat(path, *args, **kwargs)

    monkeypatch.setattr(local_files.os, "lstat", swapping_lstat)
    with pytest.raises(FileRefusedError, match="changed while it was being opened"):
        read_media(str(inside_file), roots=[root], max_bytes=100_000)
    assert swapped


def test_reading_through_the_root_descriptor_still_reads_nested_files(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "c" / "cat.png"
    path.parent.mkdir(parents=True)
    path.write_bytes(tiny_png())
    assert read_media(str(path), roots=[tmp_path], max_bytes=100_000).data == tiny_png()
    assert read_media(str(path), roots=[tmp_path / "a" / "b" / "c"], max_bytes=100_000).data == tiny_png()


def test_a_file_that_is_itself_a_root_is_read(tmp_path: Path) -> None:
    path = tmp_path / "cat.png"
    path.write_bytes(tiny_png())
    assert read_media(str(path), roots=[path], max_bytes=100_000).data == tiny_png()


def test_a_folder_swapped_for_a_symlink_after_the_check_is_not_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Completion resolves the typed folder and checks it lies inside a root; then, before it is listed, the folder
    becomes a symlink to one outside. Listing by path named the outside files; listing the folder opened one
    component at a time from the root's descriptor names nothing."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "photos").mkdir(parents=True)
    (root / "photos" / "cat.png").write_bytes(tiny_png())
    outside.mkdir()
    (outside / "tax-return-2025.png").write_bytes(tiny_png())
    real_is_inside, folder = browse.is_inside, (root / "photos").resolve()
    swapped: list[bool] = []

    def swapping_is_inside(path: Path, roots: Any) -> bool:
        inside = real_is_inside(path, roots)
        if path == folder and not swapped:  # checked, and inside: the attacker wins the race right here
            (root / "photos").rename(root / "photos.old")
            (root / "photos").symlink_to(outside, target_is_directory=True)
            swapped.append(True)
        return inside

    monkeypatch.setattr(browse, "is_inside", swapping_is_inside)
    found = browse.suggest_image_paths(f"{root}/photos/", roots=[root], max_entries=100)
    assert swapped
    assert not any("tax-return" in value for value in found.values), found.values


def test_folders_are_still_listed_through_the_root_descriptor(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "cat.png").write_bytes(tiny_png())
    (tmp_path / "a" / "b" / "inner").mkdir()
    (tmp_path / "a" / "b" / "link.png").symlink_to(tmp_path / "a" / "b" / "cat.png")
    found = browse.suggest_image_paths(f"{tmp_path}/a/b/", roots=[tmp_path], max_entries=100)
    prefix = f"{tmp_path}/a/b/"
    assert found.values == [f"{prefix}cat.png", f"{prefix}inner/", f"{prefix}link.png"]
    at_root = browse.suggest_image_paths(f"{tmp_path}/", roots=[tmp_path], max_entries=100)
    assert at_root.values == [f"{tmp_path}/a/"]
