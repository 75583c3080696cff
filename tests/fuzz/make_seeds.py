#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (tests/fuzz/seeds/<target>/): a few tiny valid files
and a few that fail one check each, so that the fuzzers start from every branch of the parsers.
Standard library only. Usage: python3 tests/fuzz/make_seeds.py"""

import json
import struct
import zlib
from pathlib import Path

SEEDS = Path(__file__).resolve().parent / "seeds"


def safetensors(header, data=b""):
    text = header if isinstance(header, str) else json.dumps(header, separators=(",", ":"))
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw + data


def npy(header, data=b"", major=1):
    raw = header.encode()
    size = struct.pack("<H" if major == 1 else "<I", len(raw))
    return b"\x93NUMPY" + bytes([major, 0]) + size + raw + data


def npy_dict(descr, shape, fortran="False"):
    return "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }\n" % (descr, fortran, shape)


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width, height, color_type, bit_depth, rows, extra=b""):
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    idat = zlib.compress(b"".join(b"\0" + row for row in rows))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra + chunk(b"IDAT", idat) +
            chunk(b"IEND", b""))


# 16x8 colour and 8x8 gray baseline JPEGs from cv::imencode (quality 10, optimized Huffman).
JPEG_COLOR = bytes.fromhex(
    "ffd8ffe000104a46494600010100000100010000ffdb00430050373c463c32504641465a55505f78c882786e6e78"
    "f5afb991c8ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffdb00"
    "4301555a5a786978eb8282ebffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
    "ffffffffffffffffffffffffffffffffffffffffffffffffffffc00011080008001003012200021101031101ffc4"
    "00160001010100000000000000000000000000000204ffc40014100100000000000000000000000000000000ffc4"
    "001501010100000000000000000000000000000203ffc4001511010100000000000000000000000000000002ffda"
    "000c03010002110311003f00964052c21fffd9")
JPEG_GRAY = bytes.fromhex(
    "ffd8ffe000104a46494600010100000100010000ffdb00430050373c463c32504641465a55505f78c882786e6e78"
    "f5afb991c8ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffc000"
    "0b080008000801011100ffc40014000100000000000000000000000000000003ffc4001410010000000000000000"
    "0000000000000000ffda0008010100003f0027ffd9")


def exif_orientation(value, big_endian):
    e = ">" if big_endian else "<"
    tiff = ((b"MM" if big_endian else b"II") + struct.pack(e + "HI", 42, 8) +
            struct.pack(e + "H", 1) + struct.pack(e + "HHIHH", 0x0112, 3, 1, value, 0) +
            struct.pack(e + "I", 0))
    payload = b"Exif\0\0" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def after_soi(jpeg, segment):
    return jpeg[:2] + segment + jpeg[2:]


def corpora():
    f32 = struct.pack("<2f", 1.5, -2.0)
    entry = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
    yield "safetensors", "f32_metadata", safetensors(
        {"__metadata__": {"format": "pt"}, "a": entry}, f32)
    yield "safetensors", "f16_bf16_scalar", safetensors(
        {"h": {"dtype": "F16", "shape": [1, 2], "data_offsets": [0, 4]},
         "b": {"dtype": "BF16", "shape": [], "data_offsets": [4, 6]},
         "z": {"dtype": "F32", "shape": [0, 3], "data_offsets": [6, 6]}},
        b"\x01\x00\x00\xfc\x80\x3f")  # F16 subnormal and -inf, BF16 1.0
    yield "safetensors", "empty", safetensors("{}  ")
    yield "safetensors", "short", b"\x02\0\0\0"
    yield "safetensors", "header_past_end", struct.pack("<Q", 1000) + b"{}"
    yield "safetensors", "duplicate", safetensors(
        '{"a":%s,"a":%s}' % (json.dumps(entry), json.dumps(entry)), f32)
    yield "safetensors", "gap", safetensors(
        {"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, f32)
    yield "safetensors", "unsupported_dtype", safetensors(
        {"a": {"dtype": "I64", "shape": [1], "data_offsets": [0, 8]}}, f32)
    yield "safetensors", "trailing_data", safetensors({"a": entry}, f32 + b"\0")
    yield "safetensors", "size_overflow_minus_zero", safetensors(
        '{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[-0,0]}}')

    yield "npy", "f4_2d", npy(npy_dict("<f4", "(2, 1)"), struct.pack("<2f", 1.0, -0.5))
    yield "npy", "f4_scalar_v2", npy(npy_dict("<f4", "()"), struct.pack("<f", 3.0), major=2)
    yield "npy", "bool_v3", npy(npy_dict("|b1", "(3,)"), b"\x01\x00\x01", major=3)
    yield "npy", "empty", npy(npy_dict("<f4", "(0, 5L)"))
    yield "npy", "fortran", npy(npy_dict("<f4", "(1,)", "True"), b"\0" * 4)
    yield "npy", "f8", npy(npy_dict("<f8", "(1,)"), b"\0" * 8)
    yield "npy", "structured", npy("{'descr': [('x', '<f4')], 'fortran_order': False, "
                                   "'shape': (1,)}", b"\0" * 4)
    yield "npy", "bad_magic", b"\x93NUMPX\x01\x00\x00\x00"
    yield "npy", "size_overflow", npy(npy_dict("<f4", "(4294967296, 4294967296)"))

    yield "image", "png_gray", png(2, 2, 0, 8, [b"\x00\xff", b"\x80\x40"])
    yield "image", "png_rgba", png(2, 1, 6, 8, [b"\xff\x00\x00\x80\x00\xff\x00\xff"])
    yield "image", "png_rgb16", png(1, 2, 2, 16, [b"\xff\xff\x00\x00\x12\x34"] * 2)
    yield "image", "png_palette", png(2, 1, 3, 8, [b"\x00\x01"],
                                      extra=chunk(b"PLTE", b"\xff\0\0\0\0\xff"))
    yield "image", "png_huge_header", png(100000, 100000, 2, 8, [])
    yield "image", "jpeg_color", JPEG_COLOR
    yield "image", "jpeg_gray_exif6_mm", after_soi(JPEG_GRAY, exif_orientation(6, True))
    yield "image", "jpeg_color_exif8_ii", after_soi(JPEG_COLOR, exif_orientation(8, False))


def main():
    for target, name, data in corpora():
        folder = SEEDS / target
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)


if __name__ == "__main__":
    main()
