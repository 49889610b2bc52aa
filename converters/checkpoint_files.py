"""Find and read the weights of a Hugging Face model folder, whatever its format.

Formats, in the order they are chosen when several are present:

============================  =========================  ===========================
format name                   file                       reader
============================  =========================  ===========================
``safetensors``               model.safetensors          safetensors_io (mmap, numpy)
``safetensors_sharded``       model.safetensors.index.json
``tf_h5``                     tf_model.h5                tf_h5_io (renamed, transposed)
``tf_h5_sharded``             tf_model.h5.index.json
``pytorch_bin``               pytorch_model.bin          torch_bin_io (needs torch and
``pytorch_bin_sharded``       pytorch_model.bin.index.json  ``allow_bin=True``)
============================  =========================  ===========================

All readers return ``{pytorch_state_dict_name: numpy array in PyTorch layout}``.
``.bin`` files are pickles: they are never opened unless the caller passes
``allow_bin=True``.

Example::

    >>> import tempfile
    >>> import numpy as np
    >>> from converters.checkpoint_files import read_checkpoint, write_checkpoint
    >>> folder = tempfile.mkdtemp()
    >>> _ = write_checkpoint(folder, {"lm_head.weight": np.zeros((8, 4), np.float32)})
    >>> tensors, format_name = read_checkpoint(folder)
    >>> format_name, tensors["lm_head.weight"].shape
    ('safetensors', (8, 4))
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from converters import safetensors_io, tf_h5_io, torch_bin_io
from converters.json_files import read_json_object

__all__ = [
    "CHECKPOINT_FORMATS",
    "CheckpointFile",
    "BinCheckpointNotAllowedError",
    "find_checkpoint_files",
    "read_checkpoint",
    "write_checkpoint",
    "read_json_config",
]

# (format name, file name), in order of preference.
CHECKPOINT_FORMATS: tuple[tuple[str, str], ...] = (
    ("safetensors", safetensors_io.SAFE_WEIGHTS_NAME),
    ("safetensors_sharded", safetensors_io.SAFE_WEIGHTS_INDEX_NAME),
    ("tf_h5", tf_h5_io.TF_WEIGHTS_NAME),
    ("tf_h5_sharded", tf_h5_io.TF_WEIGHTS_INDEX_NAME),
    ("pytorch_bin", torch_bin_io.TORCH_WEIGHTS_NAME),
    ("pytorch_bin_sharded", torch_bin_io.TORCH_WEIGHTS_INDEX_NAME),
)
_BIN_FORMATS = frozenset({"pytorch_bin", "pytorch_bin_sharded"})
_READERS = {
    "safetensors": safetensors_io.read_safetensors,
    "safetensors_sharded": safetensors_io.read_sharded_safetensors,
    "tf_h5": tf_h5_io.read_tf_h5,
    "tf_h5_sharded": tf_h5_io.read_sharded_tf_h5,
    "pytorch_bin": torch_bin_io.read_torch_bin,
    "pytorch_bin_sharded": torch_bin_io.read_sharded_torch_bin,
}
_MAX_LISTED_FILES = 40


class CheckpointFile(NamedTuple):
    """A weights file found in a model folder: its format name and path."""

    format: str
    path: str


class BinCheckpointNotAllowedError(FileNotFoundError):
    """Only a pickle ``.bin`` checkpoint exists and the caller did not pass ``allow_bin=True``."""


def _format_family(format_name: str) -> str:
    return format_name.removesuffix("_sharded")


def _describe_folder(directory: str) -> str:
    names = sorted(os.listdir(directory))
    if not names:
        return "the folder is empty"
    shown = ", ".join(names[:_MAX_LISTED_FILES])
    more = f", ... ({len(names) - _MAX_LISTED_FILES} more)" if len(names) > _MAX_LISTED_FILES else ""
    return f"the folder contains: {shown}{more}"


def _format_of_file(path: str) -> str | None:
    base = os.path.basename(path)
    for format_name, file_name in CHECKPOINT_FORMATS:
        if base == file_name:
            return format_name
    # Renamed single files or shards, by extension.
    suffixes = {".safetensors.index.json": "safetensors_sharded", ".h5.index.json": "tf_h5_sharded",
                ".bin.index.json": "pytorch_bin_sharded", ".safetensors": "safetensors", ".h5": "tf_h5",
                ".bin": "pytorch_bin"}
    for suffix, format_name in suffixes.items():
        if base.endswith(suffix):
            return format_name
    return None


def _bin_opt_in_error(paths: list[str]) -> BinCheckpointNotAllowedError:
    return BinCheckpointNotAllowedError(
        f"Only a PyTorch pickle checkpoint was found ({', '.join(paths)}). Pickle files can run "
        "arbitrary code when loaded, so they are read only on request: pass allow_bin=True "
        "(loads with torch.load(..., weights_only=True); needs torch), or convert the checkpoint "
        "to model.safetensors once: `tfmodels convert DIR DIR --allow-bin` (in place), or "
        "transformers' model.save_pretrained(dir, safe_serialization=True)."
    )


def find_checkpoint_files(directory: str | os.PathLike, allow_bin: bool = False) -> list[CheckpointFile]:
    """List the weights files of a model folder, most preferred first.

    ``directory`` may also be a weights file (``model.safetensors``, ``*.index.json``,
    ``tf_model.h5``, ...). ``.bin`` files are only listed with ``allow_bin=True``.

    Raises ``FileNotFoundError`` when the folder is missing or has no weights (the
    message lists the names looked for and what the folder holds), and
    :class:`BinCheckpointNotAllowedError` when only ``.bin`` weights exist and
    ``allow_bin`` is False.

    Example::

        >>> find_checkpoint_files("tests/fixtures/h5_reference/tf")   # from the repository root
        [CheckpointFile(format='tf_h5', path='tests/fixtures/h5_reference/tf/tf_model.h5')]
    """
    directory = os.fspath(directory)
    if os.path.isfile(directory):
        format_name = _format_of_file(directory)
        if format_name is None:
            raise ValueError(
                f"{directory}: unknown checkpoint file type; expected one of "
                f"{', '.join(name for _, name in CHECKPOINT_FORMATS)} (or a folder holding one)"
            )
        if format_name in _BIN_FORMATS and not allow_bin:
            raise _bin_opt_in_error([directory])
        return [CheckpointFile(format_name, directory)]
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"checkpoint folder does not exist: {directory}")

    present = [CheckpointFile(name, os.path.join(directory, file_name))
               for name, file_name in CHECKPOINT_FORMATS if os.path.isfile(os.path.join(directory, file_name))]
    allowed = [found for found in present if allow_bin or found.format not in _BIN_FORMATS]
    if allowed:
        return allowed
    if present:  # only .bin files, and no opt-in
        raise _bin_opt_in_error([found.path for found in present])
    looked_for = ", ".join(file_name for _, file_name in CHECKPOINT_FORMATS)
    raise FileNotFoundError(
        f"no model weights found in {directory}: looked for {looked_for}; {_describe_folder(directory)}"
    )


def read_checkpoint(
    directory: str | os.PathLike,
    prefer: str | None = None,
    allow_bin: bool = False,
) -> tuple[dict[str, np.ndarray], str]:
    """Read a model folder's weights; return ``(tensors, format_name)``.

    Picks the first format of :data:`CHECKPOINT_FORMATS` present in the folder.
    ``prefer`` ("safetensors", "tf_h5", "pytorch_bin", or a ``*_sharded`` name) picks
    that format family first when it is present, and falls back to the default order
    otherwise; check the returned ``format_name``. ``prefer="pytorch_bin"`` still needs
    ``allow_bin=True``.

    Example::

        >>> tensors, format_name = read_checkpoint("tests/fixtures/h5_reference/tf")
        >>> format_name, tensors["lm_head.weight"].shape
        ('tf_h5', (96, 32))
    """
    if prefer is not None:
        families = {_format_family(name) for name, _ in CHECKPOINT_FORMATS}
        if _format_family(prefer) not in families:
            raise ValueError(f"prefer={prefer!r} is not a checkpoint format; use one of {sorted(families)}")
        if _format_family(prefer) == "pytorch_bin" and not allow_bin:
            raise ValueError(f"prefer={prefer!r} reads a pickle file; pass allow_bin=True as well to allow it")

    candidates = find_checkpoint_files(directory, allow_bin=allow_bin)
    chosen = candidates[0]
    if prefer is not None:
        chosen = next((c for c in candidates if _format_family(c.format) == _format_family(prefer)), chosen)
    return _READERS[chosen.format](chosen.path), chosen.format


def write_checkpoint(
    directory: str | os.PathLike,
    tensors: Mapping[str, Any],
    max_shard_size: int | str | None = None,
    metadata: Mapping[str, str] | None = None,
) -> list[str]:
    """Write ``tensors`` to ``directory`` as ``model.safetensors`` (sharded when needed).

    With ``max_shard_size`` (bytes or e.g. ``"2GB"``) and more data than that, writes
    ``model-0000K-of-0000N.safetensors`` + ``model.safetensors.index.json`` like
    transformers; metadata defaults to ``{"format": "pt"}``. Returns the paths written.

    Example::

        >>> import os, tempfile
        >>> folder = tempfile.mkdtemp()
        >>> paths = write_checkpoint(folder, {"w": np.ones(4, np.float32)})
        >>> [os.path.relpath(path, folder) for path in paths]
        ['model.safetensors']
    """
    limit = max_shard_size if max_shard_size is not None else 2**62  # "never split"
    return safetensors_io.write_sharded_safetensors(directory, tensors, limit, metadata=metadata)


def read_json_config(directory: str | os.PathLike, file_name: str = "config.json") -> dict[str, Any]:
    """Load ``config.json`` (or another JSON file) from a model folder.

    Example::

        >>> read_json_config("tests/fixtures/h5_reference/pt")["d_model"]
        32
    """
    path = os.path.join(os.fspath(directory), file_name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model config not found: {path}")
    return read_json_object(path)
