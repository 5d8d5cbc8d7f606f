"""Small but real media files, made in code, for the sandbox upstream to serve as fake job outputs.

Each function returns the same bytes on every call (no clock, no randomness), needs only the standard
library and takes a few milliseconds; results are cached, so later calls are free.

- sample_mp4(): 2 s of 96x64 H.264 video in an MP4 file (~5.6 KB): colour bars, reversed after 1 s
- sample_png(): a 64x64 RGB gradient (~400 B)
- sample_wav(): 1 s of a 440 Hz tone, 16-bit mono PCM at 8 kHz (~16 KB)
- sample_mp3(): 1 s of silence as MPEG-1 Layer III frames (~4 KB; making a tone needs a real encoder)

How the video is made without an encoder: H.264 lets a macroblock (16x16 pixels) carry raw samples
(I_PCM), lets a macroblock be predicted from the one above with no residual (Intra 16x16, vertical), and
lets a P frame say "every macroblock is unchanged" (one mb_skip_run). A keyframe is thus one raw row of
macroblocks holding the bars, copied downwards; the frames between keyframes repeat it. No entropy coding
is needed beyond Exp-Golomb headers, and only Constrained Baseline tools are used (profile avc1.42C00A).
"""

from __future__ import annotations

import functools
import math
import re
import struct
import zlib
from typing import Any

# ----------------------------------------------------------------------------------------------- video

WIDTH, HEIGHT = 96, 64  # pixels: 6x4 macroblocks
FPS = 10
SECONDS = 2
KEYFRAME_INTERVAL = FPS  # one keyframe (IDR) a second, each with its own picture
LOG2_MAX_FRAME_NUM = 4  # frame_num counts 0..15 and restarts at every keyframe
TIMESCALE = 1000  # MP4 time units per second

# 75% colour bars (RGB): white, yellow, cyan, green, magenta, red, blue, black.
BARS = [(191, 191, 191), (191, 191, 0), (0, 191, 191), (0, 191, 0), (191, 0, 191), (191, 0, 0), (0, 0, 191), (0, 0, 0)]


class _BitWriter:
    """Writes an H.264 RBSP: fixed-width fields, Exp-Golomb codes, raw bytes and the trailing bits."""

    def __init__(self) -> None:
        self._bits: list[str] = []  # runs of "0"/"1" characters: slow in general, fine for a few KB
        self._length = 0

    def u(self, width: int, value: int) -> None:
        """An unsigned field of a fixed width."""
        self._bits.append(format(value, f"0{width}b"))
        self._length += width

    def ue(self, value: int) -> None:
        """Unsigned Exp-Golomb: n zeros, then value + 1 in n + 1 bits."""
        code = value + 1
        self.u(2 * code.bit_length() - 1, code)

    def se(self, value: int) -> None:
        """Signed Exp-Golomb: 1, -1, 2, -2, ... map to 1, 2, 3, 4, ..."""
        self.ue(2 * value - 1 if value > 0 else -2 * value)

    def align(self) -> None:
        """Zero bits up to the next byte boundary."""
        if self._length % 8:
            self.u(8 - self._length % 8, 0)

    def raw(self, data: bytes) -> None:
        """Whole bytes (the writer must be byte-aligned)."""
        self.u(8 * len(data), int.from_bytes(data, "big"))

    def rbsp(self) -> bytes:
        """The bytes written, closed by rbsp_trailing_bits (a stop bit, then zeros to the byte boundary)."""
        self.u(1, 1)
        self.align()
        bits = "".join(self._bits)
        return int(bits, 2).to_bytes(len(bits) // 8, "big")


def _nal(ref_idc: int, unit_type: int, rbsp: bytes) -> bytes:
    """A NAL unit: its header byte, then the RBSP with emulation prevention (00 00 0x becomes 00 00 03 0x)."""
    return bytes([ref_idc << 5 | unit_type]) + re.sub(rb"\x00\x00(?=[\x00-\x03])", b"\x00\x00\x03", rbsp)


def _sps(mbs_wide: int, mbs_high: int) -> bytes:
    w = _BitWriter()
    w.u(8, 66)  # profile_idc: Baseline
    w.u(8, 0b11000000)  # constraint_set0_flag, constraint_set1_flag: Constrained Baseline
    w.u(8, 10)  # level_idc 1.0: up to 99 macroblocks a frame, 1485 a second
    w.ue(0)  # seq_parameter_set_id
    w.ue(LOG2_MAX_FRAME_NUM - 4)
    w.ue(2)  # pic_order_cnt_type 2: display order is decoding order, no POC in slice headers
    w.ue(1)  # max_num_ref_frames
    w.u(1, 0)  # gaps_in_frame_num_value_allowed_flag
    w.ue(mbs_wide - 1)
    w.ue(mbs_high - 1)
    w.u(1, 1)  # frame_mbs_only_flag: progressive
    w.u(1, 1)  # direct_8x8_inference_flag
    w.u(1, 0)  # frame_cropping_flag
    w.u(1, 0)  # vui_parameters_present_flag
    return _nal(3, 7, w.rbsp())


def _pps() -> bytes:
    w = _BitWriter()
    w.ue(0)  # pic_parameter_set_id
    w.ue(0)  # seq_parameter_set_id
    w.u(1, 0)  # entropy_coding_mode_flag: CAVLC
    w.u(1, 0)  # bottom_field_pic_order_in_frame_present_flag
    w.ue(0)  # num_slice_groups_minus1
    w.ue(0)  # num_ref_idx_l0_default_active_minus1
    w.ue(0)  # num_ref_idx_l1_default_active_minus1
    w.u(1, 0)  # weighted_pred_flag
    w.u(2, 0)  # weighted_bipred_idc
    w.se(0)  # pic_init_qp_minus26
    w.se(0)  # pic_init_qs_minus26
    w.se(0)  # chroma_qp_index_offset
    w.u(1, 1)  # deblocking_filter_control_present_flag: slices may turn the filter off
    w.u(1, 0)  # constrained_intra_pred_flag
    w.u(1, 0)  # redundant_pic_cnt_present_flag
    return _nal(3, 8, w.rbsp())


def _slice_header(w: _BitWriter, keyframe: bool, frame_num: int, idr_pic_id: int) -> None:
    w.ue(0)  # first_mb_in_slice: one slice per picture
    w.ue(7 if keyframe else 5)  # slice_type: I or P (plus 5: every slice of the picture has this type)
    w.ue(0)  # pic_parameter_set_id
    w.u(LOG2_MAX_FRAME_NUM, frame_num)
    if keyframe:
        w.ue(idr_pic_id)  # tells one keyframe from the next
        w.u(1, 0)  # dec_ref_pic_marking: no_output_of_prior_pics_flag
        w.u(1, 0)  # dec_ref_pic_marking: long_term_reference_flag
    else:
        w.u(1, 0)  # num_ref_idx_active_override_flag
        w.u(1, 0)  # ref_pic_list_modification_flag_l0
        w.u(1, 0)  # dec_ref_pic_marking: adaptive_ref_pic_marking_mode_flag (sliding window)
    w.se(0)  # slice_qp_delta
    w.ue(1)  # disable_deblocking_filter_idc: off, so the decoded picture is exactly the samples sent


def _ycbcr(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """BT.601 limited-range Y, Cb, Cr of an RGB colour (never 0, which early editions of H.264 forbade in I_PCM)."""
    r, g, b = rgb
    return (
        16 + ((66 * r + 129 * g + 25 * b + 128) >> 8),
        128 + ((-38 * r - 74 * g + 112 * b + 128) >> 8),
        128 + ((112 * r - 94 * g - 18 * b + 128) >> 8),
    )


def _keyframe(bars: list[tuple[int, int, int]], idr_pic_id: int) -> bytes:
    """An IDR picture: bars left to right. Top macroblock row in I_PCM, the rest predicted from above."""
    mbs_wide, mbs_high = WIDTH // 16, HEIGHT // 16
    colours = [_ycbcr(bars[x * len(bars) // WIDTH]) for x in range(WIDTH)]  # per pixel column
    w = _BitWriter()
    _slice_header(w, keyframe=True, frame_num=0, idr_pic_id=idr_pic_id)
    for mb_y in range(mbs_high):
        for mb_x in range(mbs_wide):
            column = colours[16 * mb_x : 16 * mb_x + 16]
            if mb_y == 0:
                w.ue(25)  # mb_type I_PCM
                w.align()  # pcm_alignment_zero_bits
                w.raw(bytes(y for y, _, _ in column) * 16)  # 16x16 luma, row by row
                w.raw(bytes(cb for _, cb, _ in column[::2]) * 8)  # 8x8 Cb (4:2:0)
                w.raw(bytes(cr for _, _, cr in column[::2]) * 8)  # 8x8 Cr
            else:
                w.ue(1)  # mb_type I_16x16_0_0_0: luma predicted vertically, no coded residual
                w.ue(2)  # intra_chroma_pred_mode: vertical
                w.se(0)  # mb_qp_delta
                # The Intra16x16 DC block is always coded; it has no coefficients. The code for that depends
                # on nC, the coefficient count of the neighbour blocks (H.264 9.2.1), where an I_PCM block
                # counts 16 and ours count 0: just below the PCM row nC is 16 or (0 + 16 + 1) >> 1 = 8,
                # whose code is 000011; further down nC is 0, whose code is 1.
                if mb_y == 1:
                    w.u(6, 0b000011)
                else:
                    w.u(1, 1)
    return _nal(3, 5, w.rbsp())


def _repeat_frame(frame_num: int) -> bytes:
    """A P picture that copies the previous one: a single mb_skip_run over every macroblock."""
    w = _BitWriter()
    _slice_header(w, keyframe=False, frame_num=frame_num, idr_pic_id=0)
    w.ue((WIDTH // 16) * (HEIGHT // 16))  # mb_skip_run
    return _nal(2, 1, w.rbsp())


def _box(kind: bytes, *parts: bytes) -> bytes:
    payload = b"".join(parts)
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def _full_box(kind: bytes, version: int, flags: int, *parts: bytes) -> bytes:
    return _box(kind, struct.pack(">I", version << 24 | flags), *parts)


_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)  # identity transform


def _moov(sps: bytes, pps: bytes, sizes: list[int], keyframes: list[int], mdat_offset: int) -> bytes:
    """The MP4 index of one video track whose samples lie back to back from mdat_offset."""
    delta = TIMESCALE // FPS
    duration = delta * len(sizes)
    avcc = _box(
        b"avcC",
        bytes([1, sps[1], sps[2], sps[3], 0xFF, 0xE1]),  # version, profile, level; 4-byte lengths; 1 SPS
        struct.pack(">H", len(sps)) + sps + b"\x01" + struct.pack(">H", len(pps)) + pps,
    )
    avc1 = _box(
        b"avc1",
        bytes(6) + struct.pack(">H", 1),  # reserved, data_reference_index
        bytes(16) + struct.pack(">HHIIIH", WIDTH, HEIGHT, 0x480000, 0x480000, 0, 1),  # 72 dpi, 1 frame/sample
        bytes(32) + struct.pack(">Hh", 24, -1),  # no compressor name, 24-bit colour
        avcc,
    )
    stbl = _box(
        b"stbl",
        _full_box(b"stsd", 0, 0, struct.pack(">I", 1), avc1),
        _full_box(b"stts", 0, 0, struct.pack(">III", 1, len(sizes), delta)),  # every frame lasts `delta`
        _full_box(b"stss", 0, 0, struct.pack(f">I{len(keyframes)}I", len(keyframes), *keyframes)),
        _full_box(b"stsc", 0, 0, struct.pack(">IIII", 1, 1, len(sizes), 1)),  # all samples in one chunk
        _full_box(b"stsz", 0, 0, struct.pack(f">II{len(sizes)}I", 0, len(sizes), *sizes)),
        _full_box(b"stco", 0, 0, struct.pack(">II", 1, mdat_offset)),
    )
    dinf = _box(b"dinf", _full_box(b"dref", 0, 0, struct.pack(">I", 1), _full_box(b"url ", 0, 1)))  # in file
    minf = _box(b"minf", _full_box(b"vmhd", 0, 1, bytes(8)), dinf, stbl)
    mdia = _box(
        b"mdia",
        _full_box(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, TIMESCALE, duration, 0x55C4, 0)),  # "und"
        _full_box(b"hdlr", 0, 0, bytes(4), b"vide", bytes(12), b"VideoHandler\0"),
        minf,
    )
    size = struct.pack(">II", WIDTH << 16, HEIGHT << 16)  # 16.16 fixed point
    tkhd = struct.pack(">IIIII", 0, 0, 1, 0, duration) + bytes(16) + _MATRIX + size  # track 1; layer, volume 0
    mvhd = struct.pack(">IIIIIH", 0, 0, TIMESCALE, duration, 0x10000, 0x100) + bytes(10) + _MATRIX + bytes(24)
    mvhd += struct.pack(">I", 2)  # next_track_ID
    trak = _box(b"trak", _full_box(b"tkhd", 0, 3, tkhd), mdia)  # flags 3: track enabled, in the movie
    return _box(b"moov", _full_box(b"mvhd", 0, 0, mvhd), trak)


@functools.cache
def sample_mp4() -> bytes:
    """A 2-second 96x64 H.264 (Constrained Baseline) MP4: colour bars, reversed after the first second."""
    pictures = [_keyframe(BARS, idr_pic_id=0), _keyframe(BARS[::-1], idr_pic_id=1)]
    frames = []
    for n in range(FPS * SECONDS):
        since_key = n % KEYFRAME_INTERVAL
        frames.append(pictures[n // KEYFRAME_INTERVAL % 2] if since_key == 0 else _repeat_frame(since_key))
    samples = [struct.pack(">I", len(f)) + f for f in frames]  # 4-byte NAL lengths, as avcC announces
    keyframes = [n + 1 for n in range(len(frames)) if n % KEYFRAME_INTERVAL == 0]  # 1-based sample numbers
    sps, pps = _sps(WIDTH // 16, HEIGHT // 16), _pps()
    ftyp = _box(b"ftyp", b"isom", struct.pack(">I", 512), b"isomiso2avc1mp41")
    sizes = [len(s) for s in samples]
    moov_size = len(_moov(sps, pps, sizes, keyframes, 0))  # the offset's value does not change the size
    moov = _moov(sps, pps, sizes, keyframes, len(ftyp) + moov_size + 8)
    return ftyp + moov + _box(b"mdat", *samples)


# ----------------------------------------------------------------------------------------------- image


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@functools.cache
def sample_png() -> bytes:
    """A 64x64 8-bit RGB gradient PNG: red grows to the right, green downwards, blue towards the top left."""
    rows = b""
    for y in range(64):
        pixels = b"".join(bytes((4 * x, 4 * y, 255 - 2 * x - 2 * y)) for x in range(64))
        # Filter type 1 (Sub): each byte minus the same byte of the pixel to its left. A gradient becomes
        # runs of equal bytes, which deflate packs into a few hundred bytes (unfiltered: 11 KB).
        lefts = bytes(3) + pixels[:-3]
        rows += b"\x01" + bytes((byte - left) & 0xFF for byte, left in zip(pixels, lefts, strict=True))
    header = struct.pack(">IIBBBBB", 64, 64, 8, 2, 0, 0, 0)  # 8 bits, RGB, deflate, no interlace
    idat = zlib.compress(rows, 9)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


# ----------------------------------------------------------------------------------------------- audio

SAMPLE_RATE = 8000
TONE_HERTZ = 440


def _riff_chunk(kind: bytes, data: bytes) -> bytes:
    return kind + struct.pack("<I", len(data)) + data


@functools.cache
def sample_wav() -> bytes:
    """1 s of a 440 Hz tone as a 16-bit mono PCM WAV, faded in and out over 10 ms so that it does not click."""
    step, fade = 2 * math.pi * TONE_HERTZ / SAMPLE_RATE, SAMPLE_RATE // 100
    wave = [8000 * math.sin(step * i) for i in range(SAMPLE_RATE)]  # a quarter of full scale
    for i in range(fade):
        wave[i] *= i / fade
        wave[-1 - i] *= i / fade
    data = struct.pack(f"<{len(wave)}h", *(round(sample) for sample in wave))
    fmt = struct.pack("<HHIIHH", 1, 1, SAMPLE_RATE, 2 * SAMPLE_RATE, 2, 16)  # PCM, mono, bytes/s, block, bits
    chunks = _riff_chunk(b"fmt ", fmt) + _riff_chunk(b"data", data)
    return _riff_chunk(b"RIFF", b"WAVE" + chunks)


@functools.cache
def sample_mp3() -> bytes:
    """1 s of silence as a CBR MPEG-1 Layer III stream: 32 kbit/s, 32 kHz, mono, no ID3 tag.

    A frame whose side information is all zeros has no coded spectrum, which every decoder plays as
    silence; each frame is 144 * bitrate / sample rate = 144 bytes and lasts 1152 samples (36 ms).
    """
    # Sync, MPEG-1, Layer III, no CRC; 32 kbit/s, 32 kHz, no padding; mono. Then 17 bytes of side information.
    header = bytes([0xFF, 0xFB, 0x18, 0xC0])
    return (header + bytes(144 - len(header))) * math.ceil(32000 / 1152)


# ----------------------------------------------------------------------------------------------- choice


def sample_for(name: str) -> tuple[bytes, str]:
    """A sample file and its MIME type for a requested file name, by its extension.

    The extension picks the kind (image, audio, video); the bytes are the format made here for that kind
    and the MIME type names that format, not the extension (so "x.jpg" gets a PNG as image/png, which
    browsers sniff and show). ".mp3" gets silence, the other audio names the tone. Anything unknown gets the
    video, as fal's outputs are mostly videos.
    """
    extension = name.rpartition(".")[2].lower()
    if extension in {"png", "jpg", "jpeg", "webp", "gif", "bmp", "avif"}:
        return sample_png(), "image/png"
    if extension == "mp3":
        return sample_mp3(), "audio/mpeg"
    if extension in {"wav", "ogg", "oga", "opus", "flac", "m4a", "aac"}:
        return sample_wav(), "audio/wav"
    return sample_mp4(), "video/mp4"


# The names the tests used for the earlier placeholder files.
tiny_png = sample_png
tiny_mp4 = sample_mp4


def add_file_size(node: Any, media_url: str, size: int) -> None:
    """fal's file objects carry `file_size`; give the sandbox's the real size of the file served."""
    if isinstance(node, dict):
        if node.get("url") == media_url:
            node.setdefault("file_size", size)
        for value in node.values():
            add_file_size(value, media_url, size)
    elif isinstance(node, list):
        for value in node:
            add_file_size(value, media_url, size)
