#!/usr/bin/env python3
"""Minimal safetensors reader/writer for float32 tensors (numpy only, no `safetensors` package).

Layout: 8-byte little-endian header length N, N bytes of UTF-8 JSON, then the raw data.
The JSON maps tensor names to {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}
(relative to the start of the data) plus an optional "__metadata__" {str: str} object.
The writer writes F32; the reader also reads F16 (IEEE half) and BF16 (the top 16 bits of a float32),
as many Hugging Face checkpoints are stored, widened exactly to float32 (as the C++ reader does).

Run as a script to list a file's metadata and tensors:  safetensors_io.py FILE...
"""

import json
import os
import struct
import sys
from typing import Dict, Mapping, Optional, Tuple

import numpy as np

_ALIGN = 8  # header is space-padded so the data section starts 8-byte aligned
_MAX_HEADER = 100 * 1024 * 1024  # a corrupt length field must not make us allocate gigabytes


def write_safetensors(path: str, tensors: Mapping[str, np.ndarray],
                      metadata: Optional[Mapping[str, str]] = None) -> None:
    """Writes `tensors` as F32 in iteration order, atomically (temp file in the same folder, then rename)."""
    header: Dict[str, object] = {}
    if metadata:
        for key, value in metadata.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise TypeError(f"metadata must map str to str, got {key!r}: {value!r}")
        header["__metadata__"] = dict(metadata)

    blobs = []
    offset = 0
    for name, tensor in tensors.items():
        if name == "__metadata__":
            raise ValueError("'__metadata__' is reserved and cannot name a tensor")
        array = np.ascontiguousarray(tensor, dtype="<f4")
        blob = array.tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)

    header_bytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    header_bytes += b" " * (-(8 + len(header_bytes)) % _ALIGN)

    # Same folder so the rename is atomic; open() (unlike mkstemp) keeps the usual umask permissions.
    tmp_path = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp_path, "wb") as f:
            f.write(struct.pack("<Q", len(header_bytes)))
            f.write(header_bytes)
            for blob in blobs:
                f.write(blob)
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.unlink(tmp_path)
        raise


def _parse_entry(path: str, name: str, entry) -> Tuple[str, str, Tuple[int, ...], int, int]:
    try:
        begin, end = (int(o) for o in entry["data_offsets"])
        return name, entry["dtype"], tuple(int(d) for d in entry["shape"]), begin, end
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{path}: malformed header entry for tensor {name!r}: {error}") from None


_ITEM_SIZE = {"F32": 4, "F16": 2, "BF16": 2}  # the dtypes read; all widen to float32 exactly


def _as_float32(data: bytes, dtype: str, count: int, offset: int) -> np.ndarray:
    """`count` little-endian `dtype` values at `offset` of `data` as float32 (F32: a read-only view)."""
    if dtype == "F32":
        return np.frombuffer(data, dtype="<f4", count=count, offset=offset)
    if dtype == "F16":
        return np.frombuffer(data, dtype="<f2", count=count, offset=offset).astype(np.float32)
    # BF16: the value's bits are the top 16 of the float32's (inf, nan and subnormals included)
    bits = np.frombuffer(data, dtype="<u2", count=count, offset=offset).astype(np.uint32) << 16
    return bits.view(np.float32)


def read_safetensors(path: str) -> Tuple[Dict[str, np.ndarray], Dict[str, str]]:
    """Returns ({name: float32 array} in file order, metadata); raises ValueError on a malformed file.

    F32, F16 and BF16 tensors are read (F16 and BF16 widened to float32, exactly); other dtypes are an
    error naming the tensor. Checks the same invariants the C++ reader relies on, so a round trip here
    proves the file is sound.
    """
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"{path}: shorter than the 8-byte header length")
    (header_len,) = struct.unpack("<Q", raw[:8])
    if header_len > min(_MAX_HEADER, len(raw) - 8):
        raise ValueError(f"{path}: header length {header_len} exceeds the file")
    header = json.loads(raw[8:8 + header_len].decode("utf-8"))
    if not isinstance(header, dict):
        raise ValueError(f"{path}: header is not a JSON object")
    data = raw[8 + header_len:]

    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise ValueError(f"{path}: __metadata__ must map strings to strings")

    entries = sorted((_parse_entry(path, name, entry) for name, entry in header.items()),
                     key=lambda parsed: parsed[3])
    tensors: Dict[str, np.ndarray] = {}
    expected_begin = 0
    for name, dtype, shape, begin, end in entries:
        if not isinstance(dtype, str) or dtype not in _ITEM_SIZE:
            raise ValueError(f"{path}: tensor {name!r} has dtype {dtype!r}, only F32, F16 and BF16 are supported")
        if begin != expected_begin:
            raise ValueError(f"{path}: tensor {name!r} starts at {begin}, expected {expected_begin} (gap or overlap)")
        size = _ITEM_SIZE[dtype]
        if end - begin != size * int(np.prod(shape, dtype=np.int64)):
            raise ValueError(f"{path}: tensor {name!r} byte range does not match shape {list(shape)} of {dtype}")
        if end > len(data):
            raise ValueError(f"{path}: tensor {name!r} ends at {end}, beyond the {len(data)}-byte data section")
        tensors[name] = _as_float32(data, dtype, (end - begin) // size, begin).reshape(shape)
        expected_begin = end
    if expected_begin != len(data):
        raise ValueError(f"{path}: data section has {len(data) - expected_begin} trailing bytes")
    return tensors, metadata


def main(argv) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 1
    for path in argv:
        tensors, metadata = read_safetensors(path)
        print(f"{path}: {len(tensors)} tensors")
        for key, value in metadata.items():
            print(f"  meta {key} = {value}")
        for name, array in tensors.items():
            print(f"  {name} {list(array.shape)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
