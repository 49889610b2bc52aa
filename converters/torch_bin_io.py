"""Read/write PyTorch ``pytorch_model.bin`` checkpoints (pickle); needs ``torch``.

``.bin`` files are pickles, so they are only opened when the caller asked for them
(see ``converters.checkpoint_files``) and always with ``weights_only=True``, which
refuses arbitrary Python objects. Without torch these functions raise an ImportError
that suggests converting the checkpoint to safetensors instead.

Example::

    >>> import os, tempfile
    >>> import numpy as np
    >>> from converters.torch_bin_io import read_torch_bin, write_torch_bin
    >>> path = os.path.join(tempfile.mkdtemp(), "pytorch_model.bin")
    >>> write_torch_bin(path, {"w": np.eye(2, dtype=np.float32)})
    >>> read_torch_bin(path)["w"].dtype
    dtype('float32')
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import ml_dtypes
import numpy as np

from converters.shard_index import read_shard_index

__all__ = [
    "TORCH_WEIGHTS_NAME",
    "TORCH_WEIGHTS_INDEX_NAME",
    "read_torch_bin",
    "read_sharded_torch_bin",
    "write_torch_bin",
]

TORCH_WEIGHTS_NAME = "pytorch_model.bin"
TORCH_WEIGHTS_INDEX_NAME = "pytorch_model.bin.index.json"

_NO_TORCH_MESSAGE = (
    "Reading or writing PyTorch '.bin' checkpoints ({what}) needs torch, which is not installed. "
    "Install it (pip install torch), or convert the checkpoint to safetensors once on a machine "
    "that has torch, e.g. `python -c \"from transformers import AutoModel; "
    "AutoModel.from_pretrained('DIR').save_pretrained('DIR', safe_serialization=True)\"`, "
    "and load the resulting model.safetensors instead."
)


def _import_torch(what: str):
    try:
        import torch
    except ImportError as error:
        raise ImportError(_NO_TORCH_MESSAGE.format(what=what)) from error
    return torch


def _bit_views(torch) -> dict[Any, tuple[Any, np.dtype]]:
    # torch dtypes numpy cannot represent: move their bits through a same-width integer.
    views = {torch.bfloat16: (torch.int16, np.dtype(ml_dtypes.bfloat16))}
    for torch_name, numpy_dtype in (("float8_e4m3fn", ml_dtypes.float8_e4m3fn), ("float8_e5m2", ml_dtypes.float8_e5m2)):
        if hasattr(torch, torch_name):
            views[getattr(torch, torch_name)] = (torch.uint8, np.dtype(numpy_dtype))
    return views


def _tensor_to_numpy(torch, name: str, tensor: Any, path: str) -> np.ndarray:
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"{path}: entry {name!r} is a {type(tensor).__name__}, not a tensor")
    tensor = tensor.detach().cpu().contiguous()
    bit_view = _bit_views(torch).get(tensor.dtype)
    if bit_view is not None:
        integer_dtype, numpy_dtype = bit_view
        return tensor.view(integer_dtype).numpy().view(numpy_dtype)
    return tensor.numpy()


def read_torch_bin(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a ``pytorch_model.bin`` state dict as ``{name: numpy array}`` (bit-exact).

    Uses ``torch.load(path, map_location="cpu", weights_only=True)``. bfloat16 comes back
    as ``ml_dtypes.bfloat16``. Tied parameters saved under several names appear under
    each name.

    Example::

        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "pytorch_model.bin")
        >>> write_torch_bin(path, {"w": np.arange(3, dtype=np.int64)})
        >>> read_torch_bin(path)["w"].tolist()
        [0, 1, 2]
    """
    path = os.fspath(path)
    torch = _import_torch(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"PyTorch checkpoint not found: {path}")
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for bad pickles/zip files
        raise ValueError(f"{path}: cannot load as a PyTorch state dict ({type(error).__name__}: {error})") from error
    if not isinstance(state_dict, Mapping):
        raise ValueError(f"{path}: expected a state dict (name -> tensor), got {type(state_dict).__name__}")
    return {str(name): _tensor_to_numpy(torch, name, tensor, path) for name, tensor in state_dict.items()}


def read_sharded_torch_bin(index_path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a sharded ``.bin`` checkpoint from ``pytorch_model.bin.index.json``.

    Example::

        >>> tensors = read_sharded_torch_bin("model/pytorch_model.bin.index.json")  # doctest: +SKIP
    """
    index_path = os.fspath(index_path)
    _import_torch(index_path)
    weight_map, shard_paths = read_shard_index(index_path)
    tensors: dict[str, np.ndarray] = {}
    for shard_path in shard_paths:
        tensors.update(read_torch_bin(shard_path))
    absent = sorted(set(weight_map) - set(tensors))
    if absent:
        raise ValueError(f"{index_path}: {len(absent)} tensor(s) listed in the index are in no shard: {absent[:20]}")
    return tensors


def write_torch_bin(path: str | os.PathLike, tensors: Mapping[str, Any]) -> None:
    """Write ``{name: numpy array}`` as a ``pytorch_model.bin`` state dict (bit-exact).

    Example::

        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "pytorch_model.bin")
        >>> write_torch_bin(path, {"w": np.zeros((2, 2), dtype=ml_dtypes.bfloat16)})
        >>> read_torch_bin(path)["w"].dtype
        dtype(bfloat16)
    """
    path = os.fspath(path)
    torch = _import_torch(path)
    by_numpy_dtype = {numpy_dtype: (integer_dtype, torch_dtype)
                      for torch_dtype, (integer_dtype, numpy_dtype) in _bit_views(torch).items()}
    state_dict = {}
    for name, value in tensors.items():
        # A private, writable, contiguous copy: torch.from_numpy shares memory and
        # rejects read-only (e.g. memory-mapped) arrays.
        array = np.array(value, copy=True, order="C")
        if array.dtype.byteorder == ">":  # torch only takes native (little-endian) arrays
            array = array.astype(array.dtype.newbyteorder("<"))
        bit_view = by_numpy_dtype.get(array.dtype)
        if bit_view is not None:
            integer_dtype, torch_dtype = bit_view
            integer_numpy = np.int16 if integer_dtype == torch.int16 else np.uint8
            state_dict[name] = torch.from_numpy(array.view(integer_numpy)).view(torch_dtype)
        else:
            state_dict[name] = torch.from_numpy(array)
    torch.save(state_dict, path)
