"""Read and write ``.safetensors`` files with numpy only (no torch, no ``safetensors``).

File layout (https://github.com/huggingface/safetensors, "Format"):

* 8 bytes: ``N``, the header length, unsigned 64-bit little-endian.
* ``N`` bytes: a UTF-8 JSON object that starts with ``{`` and may be padded at the end
  with spaces. Each tensor name maps to ``{"dtype", "shape", "data_offsets": [begin, end]}``
  with offsets relative to the byte buffer that follows the header; the optional
  ``"__metadata__"`` entry is a str -> str map.
* the byte buffer: every tensor's bytes, row-major and little-endian. The buffer must be
  fully covered by the tensors (no holes, no overlaps).

Like the reference writer, :func:`write_safetensors` pads the header with spaces to a
multiple of 8 bytes and stores tensors by decreasing element size (then by name), so
every tensor starts at an offset aligned to its element size and can be viewed in place;
for the same tensors and metadata it produces the same bytes as ``safetensors.numpy``.

Example::

    >>> import os, tempfile
    >>> import numpy as np
    >>> from converters.safetensors_io import read_safetensors, write_safetensors
    >>> path = os.path.join(tempfile.mkdtemp(), "model.safetensors")
    >>> write_safetensors(path, {"linear.weight": np.ones((2, 3), dtype=np.float32)})
    >>> read_safetensors(path)["linear.weight"].shape
    (2, 3)
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping
from typing import Any

import ml_dtypes
import numpy as np

from converters.shard_index import read_shard_index

__all__ = [
    "SAFETENSORS_DTYPES",
    "SAFE_WEIGHTS_NAME",
    "SAFE_WEIGHTS_INDEX_NAME",
    "read_safetensors",
    "read_safetensors_header",
    "read_safetensors_metadata",
    "read_sharded_safetensors",
    "write_safetensors",
    "write_sharded_safetensors",
    "parse_size",
]

SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"

# safetensors dtype tag -> little-endian numpy dtype, in the order of the reference
# implementation's dtype enum (the writer sorts by it). bfloat16 and float8 come from
# ml_dtypes (a tensorflow dependency), which numpy views byte-for-byte.
SAFETENSORS_DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "U8": np.dtype("<u1"),
    "I8": np.dtype("<i1"),
    "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2),
    "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
    "I16": np.dtype("<i2"),
    "U16": np.dtype("<u2"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "I32": np.dtype("<i4"),
    "U32": np.dtype("<u4"),
    "F32": np.dtype("<f4"),
    "F64": np.dtype("<f8"),
    "I64": np.dtype("<i8"),
    "U64": np.dtype("<u8"),
}
_DTYPE_RANK = {tag: rank for rank, tag in enumerate(SAFETENSORS_DTYPES)}
# Reverse map, keyed by little-endian dtype (inputs are normalised with newbyteorder("<")).
_TAG_BY_DTYPE: dict[np.dtype, str] = {dtype: tag for tag, dtype in SAFETENSORS_DTYPES.items()}

_HEADER_LENGTH_BYTES = 8
_MAX_HEADER_BYTES = 100 * 1000 * 1000  # same limit as the reference implementation
_METADATA_KEY = "__metadata__"
_SHARD_NAME = re.compile(r"^(?P<stem>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})(?P<suffix>\.safetensors)$")


# --------------------------------------------------------------------------- reading


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r} in the JSON header")
        result[key] = value
    return result


def _parse_header(path: str, head: bytes, file_size: int) -> tuple[dict[str, Any], int]:
    """Validate the header; return ``(header, byte_buffer_start)``. ``head`` = file start."""
    if file_size < _HEADER_LENGTH_BYTES:
        raise ValueError(
            f"{path}: not a safetensors file: {file_size} bytes, too short for the 8-byte header length"
        )
    header_length = int.from_bytes(head[:_HEADER_LENGTH_BYTES], "little")
    if header_length > _MAX_HEADER_BYTES:
        raise ValueError(
            f"{path}: not a safetensors file (or corrupt): header length {header_length} exceeds "
            f"the {_MAX_HEADER_BYTES}-byte limit"
        )
    buffer_start = _HEADER_LENGTH_BYTES + header_length
    if buffer_start > file_size:
        raise ValueError(
            f"{path}: truncated or corrupt safetensors file: the header needs {header_length} bytes "
            f"but the file has only {file_size - _HEADER_LENGTH_BYTES} after the length field"
        )
    raw_header = head[_HEADER_LENGTH_BYTES:buffer_start]
    if not raw_header.startswith(b"{"):
        raise ValueError(f"{path}: corrupt safetensors file: the JSON header does not start with '{{'")
    try:
        header = json.loads(raw_header.decode("utf-8"), object_pairs_hook=_reject_duplicate_keys)
    except (UnicodeDecodeError, ValueError) as error:  # JSONDecodeError is a ValueError
        raise ValueError(f"{path}: corrupt safetensors file: invalid JSON header ({error})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: corrupt safetensors file: the JSON header is not an object")
    return header, buffer_start


_Entry = tuple[np.dtype, tuple[int, ...], int, int]  # dtype, shape, begin, end


def _validate_entries(path: str, header: dict[str, Any], buffer_length: int) -> dict[str, _Entry]:
    """Check every tensor entry against the byte buffer; return name -> (dtype, shape, begin, end)."""
    metadata = header.get(_METADATA_KEY, {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ValueError(f"{path}: corrupt safetensors file: '__metadata__' must map strings to strings")

    entries = {}
    for name, entry in header.items():
        if name == _METADATA_KEY:
            continue
        if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= entry.keys():
            raise ValueError(f"{path}: corrupt safetensors file: entry {name!r} lacks dtype/shape/data_offsets")
        tag, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if tag not in SAFETENSORS_DTYPES:
            raise ValueError(
                f"{path}: tensor {name!r} has dtype {tag!r}, which this reader does not support "
                f"(supported: {', '.join(SAFETENSORS_DTYPES)})"
            )
        if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
            raise ValueError(f"{path}: corrupt safetensors file: tensor {name!r} has invalid shape {shape!r}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)):
            raise ValueError(f"{path}: corrupt safetensors file: tensor {name!r} has invalid data_offsets {offsets!r}")
        dtype = SAFETENSORS_DTYPES[tag]
        begin, end = offsets
        expected_bytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if not 0 <= begin <= end or end - begin != expected_bytes:
            raise ValueError(
                f"{path}: corrupt safetensors file: tensor {name!r} ({tag}, shape {shape}) needs "
                f"{expected_bytes} bytes but data_offsets are {offsets}"
            )
        if end > buffer_length:
            raise ValueError(
                f"{path}: truncated or corrupt safetensors file: tensor {name!r} ends at byte {end} of the "
                f"data buffer, which has only {buffer_length} bytes"
            )
        entries[name] = (dtype, tuple(shape), begin, end)

    # The spec forbids holes and overlaps: sorted by offset, each tensor must start
    # exactly where the previous one ended, and the last must end at the end of file.
    position = 0
    for name, (_, _, begin, end) in sorted(entries.items(), key=lambda item: (item[1][2], item[1][3])):
        if begin != position:
            problem = "overlaps the previous tensor" if begin < position else f"leaves a hole at byte {position}"
            raise ValueError(f"{path}: corrupt safetensors file: tensor {name!r} {problem}")
        position = end
    if position != buffer_length:
        raise ValueError(
            f"{path}: corrupt safetensors file: tensors cover {position} bytes but the data buffer has "
            f"{buffer_length} (trailing bytes after the last tensor)"
        )
    return entries


def read_safetensors_header(path: str | os.PathLike) -> dict[str, Any]:
    """Return the validated JSON header of a ``.safetensors`` file without loading tensors.

    Example::

        >>> path = "tests/fixtures/h5_reference/pt/model.safetensors"   # from the repository root
        >>> header = read_safetensors_header(path)
        >>> name = "decoder.block.0.layer.0.SelfAttention.k.weight"
        >>> header[name]["dtype"], header[name]["shape"]
        ('BF16', [36, 32])
    """
    path = os.fspath(path)
    file_size = os.path.getsize(path)
    with open(path, "rb") as handle:
        head = handle.read(_HEADER_LENGTH_BYTES)
        if len(head) == _HEADER_LENGTH_BYTES:
            length = int.from_bytes(head, "little")
            if length <= _MAX_HEADER_BYTES:
                head += handle.read(length)
    header, buffer_start = _parse_header(path, head, file_size)
    _validate_entries(path, header, file_size - buffer_start)
    return header


def read_safetensors_metadata(path: str | os.PathLike) -> dict[str, str]:
    """Return the ``__metadata__`` map of a ``.safetensors`` file (``{}`` when absent).

    Example::

        >>> read_safetensors_metadata("tests/fixtures/h5_reference/pt/model.safetensors")
        {'format': 'pt'}
    """
    return dict(read_safetensors_header(path).get(_METADATA_KEY, {}))


def read_safetensors(path: str | os.PathLike, copy: bool = False) -> dict[str, np.ndarray]:
    """Read every tensor of a ``.safetensors`` file into ``{name: numpy array}``.

    The file is memory-mapped: with ``copy=False`` (default) each array is a read-only
    view into the mapping, so pages are only read when used and nothing is duplicated.
    Pass ``copy=True`` for independent, writable arrays (the file is then closed).
    bfloat16 / float8 tensors come back as ``ml_dtypes`` arrays, bit-for-bit.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` (naming the file)
    for a truncated or corrupt one.

    Example::

        >>> tensors = read_safetensors("tests/fixtures/h5_reference/pt/model.safetensors")
        >>> tensors["shared.weight"].dtype
        dtype(bfloat16)
    """
    path = os.fspath(path)
    file_size = os.path.getsize(path)  # FileNotFoundError names the path
    if file_size < _HEADER_LENGTH_BYTES:
        _parse_header(path, b"", file_size)  # raises the "too short" error
    mapped = np.memmap(path, dtype=np.uint8, mode="r")
    declared_length = int.from_bytes(mapped[:_HEADER_LENGTH_BYTES].tobytes(), "little")
    # Cap the slice so a corrupt length cannot make us copy a huge range before the check.
    head = mapped[: _HEADER_LENGTH_BYTES + min(declared_length, _MAX_HEADER_BYTES + 1)].tobytes()
    header, buffer_start = _parse_header(path, head, file_size)
    entries = _validate_entries(path, header, file_size - buffer_start)

    tensors: dict[str, np.ndarray] = {}
    for name, (dtype, shape, begin, end) in entries.items():
        raw = mapped[buffer_start + begin : buffer_start + end]
        array = raw.view(dtype).reshape(shape)  # zero-copy view (numpy handles unaligned views)
        tensors[name] = array.copy() if copy else array
    if copy:
        del mapped  # drop the mapping now rather than at garbage collection
    return tensors


def read_sharded_safetensors(index_path: str | os.PathLike, copy: bool = False) -> dict[str, np.ndarray]:
    """Read a sharded checkpoint from its ``model.safetensors.index.json``.

    Every shard named in ``weight_map`` is read (memory-mapped, see
    :func:`read_safetensors`); names listed in the index but absent from their shard,
    names found in two shards, and missing shard files are errors.

    Example::

        >>> import os
        >>> from tfmodels import BUNDLED_TRANSLATOR_DIR
        >>> tensors = read_sharded_safetensors(
        ...     os.path.join(BUNDLED_TRANSLATOR_DIR, "model.safetensors.index.json"))
        >>> tensors["model.shared.weight"].shape
        (1108, 128)
    """
    index_path = os.fspath(index_path)
    weight_map, shard_paths = read_shard_index(index_path)

    tensors: dict[str, np.ndarray] = {}
    origin: dict[str, str] = {}
    for shard_path in shard_paths:
        shard_name = os.path.basename(shard_path)
        for name, array in read_safetensors(shard_path, copy=copy).items():
            if name in tensors:
                raise ValueError(f"{index_path}: tensor {name!r} is stored in both {origin[name]} and {shard_name}")
            tensors[name], origin[name] = array, shard_name
    misplaced = sorted(name for name, shard in weight_map.items() if origin.get(name) != shard)
    if misplaced:
        details = ", ".join(
            f"{name!r} (index: {weight_map[name]}, found: {origin.get(name, 'nowhere')})" for name in misplaced[:20]
        )
        raise ValueError(f"{index_path}: {len(misplaced)} tensor(s) are not where the index says: {details}")
    return tensors


# --------------------------------------------------------------------------- writing


def _as_little_endian_array(name: str, value: Any) -> tuple[str, np.ndarray]:
    array = np.asarray(value)
    tag = _TAG_BY_DTYPE.get(array.dtype.newbyteorder("<")) if array.dtype.kind != "O" else None
    if tag is None:
        raise ValueError(
            f"tensor {name!r} has dtype {array.dtype}, which safetensors cannot store "
            f"(supported: {', '.join(str(d) for d in SAFETENSORS_DTYPES.values())})"
        )
    # Explicit little-endian, C-contiguous bytes, as the format requires.
    # (astype rather than np.ascontiguousarray, which would turn a 0-d scalar into shape (1,).)
    array = array.astype(SAFETENSORS_DTYPES[tag], order="C", copy=False)
    return tag, array


def write_safetensors(
    path: str | os.PathLike,
    tensors: Mapping[str, Any],
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write ``{name: array}`` to ``path`` in the safetensors format.

    ``metadata`` defaults to ``{"format": "pt"}`` (what transformers writes and checks for
    PyTorch-layout checkpoints); pass ``{}`` for none. Values are written bit-exactly;
    bfloat16/float8 need ``ml_dtypes`` arrays. The file is written to a temporary name
    and renamed, so an interrupted write never leaves a truncated ``path``.

    Example::

        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "example.safetensors")
        >>> write_safetensors(path, {"embed.weight": np.zeros((4, 2), dtype=ml_dtypes.bfloat16)})
        >>> read_safetensors(path)["embed.weight"].dtype
        dtype(bfloat16)
    """
    path = os.fspath(path)
    metadata = {"format": "pt"} if metadata is None else dict(metadata)
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise TypeError("safetensors metadata must map str to str")

    prepared = []
    for name, value in tensors.items():
        if not isinstance(name, str) or name == _METADATA_KEY:
            raise ValueError(f"invalid tensor name {name!r}")
        tag, array = _as_little_endian_array(name, value)
        prepared.append((name, tag, array))
    # Same order as the reference writer: by dtype enum rank descending (element sizes
    # 8, 4, 2, 1 bytes), then by name. With the 8-byte aligned header, every tensor then
    # starts at a multiple of its element size, and our bytes equal the reference's.
    prepared.sort(key=lambda item: (-_DTYPE_RANK[item[1]], item[0]))

    header: dict[str, Any] = {}
    if metadata:
        header[_METADATA_KEY] = metadata
    offset = 0
    for name, tag, array in prepared:
        header[name] = {"dtype": tag, "shape": list(array.shape), "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
    header_bytes = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    header_bytes += b" " * (-len(header_bytes) % 8)  # spaces are allowed trailing padding

    folder = os.path.dirname(os.path.abspath(path))
    handle = tempfile.NamedTemporaryFile(dir=folder, prefix=".tmp-", suffix=".safetensors", delete=False)
    try:
        with handle:
            handle.write(len(header_bytes).to_bytes(_HEADER_LENGTH_BYTES, "little"))
            handle.write(header_bytes)
            for _, _, array in prepared:
                # A uint8 view of the flat array exposes the raw bytes without a copy
                # (ml_dtypes arrays do not export a buffer format of their own).
                handle.write(array.reshape(-1).view(np.uint8).data)
        os.chmod(handle.name, 0o644)  # NamedTemporaryFile creates 0600 files
        os.replace(handle.name, path)
    except BaseException:
        if os.path.exists(handle.name):
            os.remove(handle.name)
        raise


def parse_size(size: int | str) -> int:
    """Convert ``5000000``, ``"5MB"``, ``"10GiB"`` or ``"500KB"`` to bytes (HF conventions).

    Example::

        >>> parse_size("2MB"), parse_size("1KiB"), parse_size(10)
        (2000000, 1024, 10)
    """
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        if size <= 0:
            raise ValueError(f"size must be positive, got {size}")
        return int(size)
    match = re.fullmatch(r"\s*(\d+)\s*([KMGT]i?B)?\s*", str(size), flags=re.IGNORECASE)
    if not match:
        raise ValueError(f"cannot parse size {size!r}; use bytes or e.g. '500MB', '5GB', '2GiB'")
    number, unit = int(match.group(1)), (match.group(2) or "B").upper()
    scale = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
             "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}[unit]
    if number <= 0:
        raise ValueError(f"size must be positive, got {size!r}")
    return number * scale


def _plan_shards(sized_names: list[tuple[str, int]], max_shard_bytes: int) -> list[list[str]]:
    # Greedy, in the given order (as transformers does): open a new shard when the next
    # tensor would push the current one over the limit. A tensor larger than the limit
    # gets a shard of its own.
    shards: list[list[str]] = [[]]
    shard_bytes = 0
    for name, nbytes in sized_names:
        if shards[-1] and shard_bytes + nbytes > max_shard_bytes:
            shards.append([])
            shard_bytes = 0
        shards[-1].append(name)
        shard_bytes += nbytes
    return shards


def write_sharded_safetensors(
    directory: str | os.PathLike,
    tensors: Mapping[str, Any],
    max_shard_size: int | str,
    weights_name: str = SAFE_WEIGHTS_NAME,
    metadata: Mapping[str, str] | None = None,
) -> list[str]:
    """Write ``tensors`` into ``directory`` as safetensors, sharded above ``max_shard_size``.

    Uses transformers' layout: a single ``model.safetensors`` when everything fits in one
    shard, otherwise ``model-00001-of-0000N.safetensors`` files plus
    ``model.safetensors.index.json`` (``metadata.total_size`` = tensor bytes,
    ``weight_map`` = name -> shard file). Files of a previous write with the same
    ``weights_name`` (single file, index, other shards) are removed after the new ones
    are written, so readers never mix two checkpoints. Returns the paths written (index
    last).

    Example::

        >>> paths = write_sharded_safetensors("/tmp/ckpt", {"a": np.zeros(300, np.float32),
        ...                                                 "b": np.zeros(300, np.float32)}, "1KB")
        >>> [os.path.basename(path) for path in paths]
        ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'model.safetensors.index.json']
    """
    directory = os.fspath(directory)
    max_shard_bytes = parse_size(max_shard_size)
    if not weights_name.endswith(".safetensors"):
        raise ValueError(f"weights_name must end with .safetensors, got {weights_name!r}")
    stem = weights_name[: -len(".safetensors")]
    index_name = weights_name + ".index.json"
    os.makedirs(directory, exist_ok=True)

    arrays = {name: _as_little_endian_array(name, value)[1] for name, value in tensors.items()}
    shards = _plan_shards([(name, array.nbytes) for name, array in arrays.items()], max_shard_bytes)

    if len(shards) == 1:
        written = [os.path.join(directory, weights_name)]
        write_safetensors(written[0], arrays, metadata)
    else:
        written, weight_map = [], {}
        for number, names in enumerate(shards, start=1):
            shard_name = f"{stem}-{number:05d}-of-{len(shards):05d}.safetensors"
            path = os.path.join(directory, shard_name)
            write_safetensors(path, {name: arrays[name] for name in names}, metadata)
            weight_map.update(dict.fromkeys(names, shard_name))
            written.append(path)
        index = {
            "metadata": {
                "total_parameters": int(sum(array.size for array in arrays.values())),
                "total_size": int(sum(array.nbytes for array in arrays.values())),
            },
            "weight_map": dict(sorted(weight_map.items())),
        }
        written.append(os.path.join(directory, index_name))
        _write_text_atomically(written[-1], json.dumps(index, indent=2, sort_keys=True) + "\n")

    # Only now remove what a previous write left (a single file, an index, other shard
    # counts): a failed write above leaves the old checkpoint in place.
    keep = {os.path.basename(path) for path in written}
    for existing in os.listdir(directory):
        match = _SHARD_NAME.match(existing)
        stale = existing in (weights_name, index_name) or (match is not None and match.group("stem") == stem)
        if stale and existing not in keep:
            os.remove(os.path.join(directory, existing))
    return written


def _write_text_atomically(path: str, text: str) -> None:
    handle = tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", dir=os.path.dirname(os.path.abspath(path)), prefix=".tmp-", delete=False
    )
    try:
        with handle:
            handle.write(text)
        os.chmod(handle.name, 0o644)
        os.replace(handle.name, path)
    except BaseException:
        if os.path.exists(handle.name):
            os.remove(handle.name)
        raise
