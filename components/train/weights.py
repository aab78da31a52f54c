"""Reading and writing Hugging Face safetensors folders one tensor at a time (bounded host memory).

``iter_safetensors`` parses the safetensors header itself and reads each tensor with ``readinto`` into a fresh
buffer: no memory map, so a reader's resident memory is the tensor it holds, not the file it has touched.
``ShardedWriter`` writes ``model-0000i-of-0000N.safetensors`` shards of at most ``max_shard_bytes`` plus
``model.safetensors.index.json`` (one ``model.safetensors`` when everything fits in one shard), as
``save_pretrained(max_shard_size=...)`` does, holding at most one shard in memory.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Iterator

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"

_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
           "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}


def weight_files(folder: str | Path) -> list[Path]:
    """The safetensors files of a model folder, in index order."""
    folder = Path(folder)
    if (folder / INDEX).is_file():
        index = json.loads((folder / INDEX).read_text(encoding="utf-8"))
        return [folder / name for name in dict.fromkeys(index["weight_map"].values())]
    if (folder / SINGLE).is_file():
        return [folder / SINGLE]
    raise FileNotFoundError(f"{folder} holds no {SINGLE} and no {INDEX}")


def header(path: Path) -> dict:
    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        meta = json.loads(fh.read(n))
    meta.pop("__metadata__", None)
    return meta


def tensor_index(folder: str | Path) -> dict[str, tuple[Path, dict]]:
    """name -> (file, header entry) for every tensor of the folder."""
    out = {}
    for path in weight_files(folder):
        for name, entry in header(path).items():
            out[name] = (path, entry)
    return out


def read_tensor(path: Path, entry: dict):
    """One tensor, read with ``readinto`` (no mmap)."""
    import torch

    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        start, end = entry["data_offsets"]
        dtype = getattr(torch, _DTYPES[entry["dtype"]])
        out = torch.empty(entry["shape"], dtype=dtype)
        fh.seek(8 + n + start)
        view = out.view(-1).view(torch.uint8) if out.numel() else bytearray()
        if end > start:
            fh.readinto(memoryview(view.numpy()))
    return out


def iter_safetensors(folder: str | Path) -> Iterator[tuple[str, object]]:
    for name, (path, entry) in tensor_index(folder).items():
        yield name, read_tensor(path, entry)


_CODES = {v: k for k, v in _DTYPES.items()}


def write_safetensors(path: Path, tensors: dict) -> None:
    """A safetensors file written straight from the tensors' memory.

    ``safetensors.torch.save_file`` first copies every tensor into a Python ``bytes`` object, which doubles the
    memory of a shard; this writes the same format (8-byte header length, JSON header padded to 8 bytes, then
    the raw little-endian data) tensor by tensor.
    """
    import torch

    meta: dict = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, t in tensors.items():
        size = t.numel() * t.element_size()
        meta[name] = {"dtype": _CODES[str(t.dtype).removeprefix("torch.")], "shape": list(t.shape),
                      "data_offsets": [offset, offset + size]}
        offset += size
    head = json.dumps(meta, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(head)))
        fh.write(head)
        for t in tensors.values():
            if t.numel():
                fh.write(memoryview(t.contiguous().view(-1).view(torch.uint8).numpy()))


class ShardedWriter:
    """Collects tensors into shards of at most ``max_shard_bytes`` and writes each as soon as it is full."""

    def __init__(self, out: str | Path, max_shard_bytes: int) -> None:
        self.out = Path(out)
        self.max_bytes = max_shard_bytes
        self.pending: dict[str, object] = {}
        self.pending_bytes = 0
        self.files: list[tuple[Path, list[str]]] = []
        self.total_bytes = 0
        self.largest_shard_bytes = 0

    def add(self, name: str, tensor) -> None:
        size = tensor.numel() * tensor.element_size()
        if self.pending and self.pending_bytes + size > self.max_bytes:
            self._flush()
        self.pending[name] = tensor.contiguous()
        self.pending_bytes += size

    def _flush(self) -> None:
        path = self.out / f".shard-{len(self.files):05d}.safetensors"
        write_safetensors(path, self.pending)
        self.files.append((path, list(self.pending)))
        self.total_bytes += self.pending_bytes
        self.largest_shard_bytes = max(self.largest_shard_bytes, self.pending_bytes)
        self.pending, self.pending_bytes = {}, 0

    def close(self) -> list[Path]:
        if self.pending:
            self._flush()
        n = len(self.files)
        if n == 1:
            final = self.out / SINGLE
            os.replace(self.files[0][0], final)
            return [final]
        weight_map, names = {}, []
        for i, (path, keys) in enumerate(self.files):
            final = self.out / f"model-{i + 1:05d}-of-{n:05d}.safetensors"
            os.replace(path, final)
            names.append(final)
            weight_map.update({k: final.name for k in keys})
        (self.out / INDEX).write_text(json.dumps({"metadata": {"total_size": self.total_bytes},
                                                  "weight_map": weight_map}, indent=2) + "\n", encoding="utf-8")
        return names
