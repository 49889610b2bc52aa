"""The index of a sharded checkpoint (``*.index.json``): which shard file holds each tensor.

transformers writes the same index next to sharded safetensors, ``tf_model.h5`` and
``pytorch_model.bin`` checkpoints (``{"metadata": {...}, "weight_map": {name: shard}}``);
the three sharded readers validate it here, so they refuse the same bad indexes.

Example::

    >>> import json, os, tempfile
    >>> from converters.shard_index import read_shard_index
    >>> folder = tempfile.mkdtemp()
    >>> for shard in ("a.bin", "b.bin"):
    ...     open(os.path.join(folder, shard), "wb").close()
    >>> index_path = os.path.join(folder, "model.index.json")
    >>> with open(index_path, "w") as handle:
    ...     json.dump({"weight_map": {"x": "b.bin", "y": "a.bin", "z": "b.bin"}}, handle)
    >>> weight_map, shard_paths = read_shard_index(index_path)
    >>> weight_map["x"], [os.path.basename(path) for path in shard_paths]
    ('b.bin', ['a.bin', 'b.bin'])
"""

from __future__ import annotations

import os

from converters.json_files import read_json_object

__all__ = ["read_shard_index"]


def read_shard_index(index_path: str | os.PathLike) -> tuple[dict[str, str], list[str]]:
    """``(weight_map, shard_paths)`` of the index at ``index_path``: tensor name -> shard
    file name, and the paths of the distinct shard files, sorted by name.

    Raises ValueError when the index is not JSON, has no ``weight_map`` of strings, or names
    a shard that is not a plain file name next to the index (a path could reach files
    outside the checkpoint folder), and FileNotFoundError listing the shard files that are
    missing.
    """
    index_path = os.fspath(index_path)
    weight_map = read_json_object(index_path).get("weight_map")
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise ValueError(f"{index_path}: expected an object with a 'weight_map' of tensor name -> shard file")
    shard_names = sorted(set(weight_map.values()))
    for shard in shard_names:
        if os.path.basename(shard) != shard or shard in ("", ".", ".."):
            raise ValueError(f"{index_path}: shard file name {shard!r} is not a plain file name")
    folder = os.path.dirname(index_path)
    missing = [name for name in shard_names if not os.path.isfile(os.path.join(folder, name))]
    if missing:
        raise FileNotFoundError(f"{index_path}: shard file(s) listed in weight_map are missing: {missing}")
    return weight_map, [os.path.join(folder, name) for name in shard_names]
