"""Read Hugging Face TF checkpoints (``tf_model.h5``) as PyTorch-named, PyTorch-layout arrays.

``TFPreTrainedModel.save_pretrained`` writes Keras-2 HDF5 weights:

* the root attribute ``layer_names`` lists the top-level Keras layers; each has a group
  whose attribute ``weight_names`` lists full TF variable names such as
  ``tfmt5_for_conditional_generation/encoder/block_._0/layer_._0/SelfAttention/q/kernel:0``,
  and each name is also the dataset path inside that group. A variable shared by
  several layers (mT5's ``shared/shared/embeddings:0``) is stored once per layer.
* sharded saves (``tf_model.h5.index.json`` + ``tf_model-0000K-of-0000N.h5``) instead list
  datasets directly in the root ``layer_names``, with the first name scope (the model
  name) already dropped unless the name contains ``model.``.

TF variable names are turned into PyTorch state-dict names with transformers' generic
rules (``convert_tf_weight_name_to_pt_weight_name`` in ``modeling_tf_pytorch_utils``):

1. drop the ``:0`` device suffix;
2. a scope ``a___b`` stands for ``b`` (TF-only wrapper scopes);
3. ``_._`` separates list items: ``block_._0`` is ``block/0`` -> ``block.0``;
4. the first scope (the TF model's own name) is dropped when there is more than one;
5. the last component ``kernel``/``embeddings``/``gamma`` becomes ``weight``, ``beta``
   becomes ``bias``, ``pointwise_kernel``/``depthwise_kernel`` become ``pointwise.weight``/
   ``depthwise.weight``;
6. layout: a ``kernel`` of rank 4 is a Conv2D (TF ``[kh, kw, in, out]`` -> PT
   ``[out, in, kh, kw]``), of rank 3 a Conv1D (``[k, in, out]`` -> ``[out, in, k]``);
   other ``kernel``/``pointwise_kernel``/``depthwise_kernel`` and anything under an
   ``emb_projs``/``out_projs`` scope are transposed (Dense ``[in, out]`` -> Linear
   ``[out, in]``); everything else (embeddings, norms, biases) is kept as is.

Transformers additionally reshapes a converted tensor to the shape the target PyTorch
parameter has; that needs the model, so it is left to the model-specific mapping.

Example::

    >>> from converters.tf_h5_io import read_tf_h5, tf_weight_name_to_pt_name
    >>> tf_weight_name_to_pt_name("tfmt5_for_conditional_generation/lm_head/kernel:0", (32, 96))
    ('lm_head.weight', 'transpose')
    >>> tensors = read_tf_h5("tests/fixtures/h5_reference/tf/tf_model.h5")  # repository root
    >>> tensors["lm_head.weight"].shape
    (96, 32)
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from converters.shard_index import read_shard_index

__all__ = [
    "TF_WEIGHTS_NAME",
    "TF_WEIGHTS_INDEX_NAME",
    "tf_weight_name_to_pt_name",
    "tf_to_pt_layout",
    "read_tf_h5",
    "read_tf_h5_raw",
    "read_sharded_tf_h5",
]

TF_WEIGHTS_NAME = "tf_model.h5"
TF_WEIGHTS_INDEX_NAME = "tf_model.h5.index.json"

# Layout changes from TF to PyTorch (the inverse of what transformers applies PT -> TF).
NO_TRANSPOSE = "none"
TRANSPOSE = "transpose"  # reverse all axes; for a Dense kernel [in, out] -> [out, in]
CONV1D = "conv1d"  # [kernel, in, out] -> [out, in, kernel]
CONV2D = "conv2d"  # [kh, kw, in, out] -> [out, in, kh, kw]
_AXES = {CONV1D: (2, 1, 0), CONV2D: (3, 2, 0, 1)}

_WEIGHT_SUFFIXES = {"kernel": "weight", "embeddings": "weight", "gamma": "weight", "beta": "bias"}
_SEPARABLE_KERNELS = {"pointwise_kernel": "pointwise.weight", "depthwise_kernel": "depthwise.weight"}


def _require_h5py():
    try:
        import h5py
    except ImportError as error:  # h5py ships with tensorflow/keras, but be explicit
        raise ImportError("reading tf_model.h5 needs h5py: pip install h5py") from error
    return h5py


def tf_weight_name_to_pt_name(
    tf_name: str,
    tf_shape: Sequence[int] | None = None,
    prefix_to_remove: str = "",
    drop_first_scope: bool = True,
) -> tuple[str, str]:
    """Map a TF variable name to ``(pytorch_name, layout_change)``.

    ``layout_change`` is one of ``"none"``, ``"transpose"``, ``"conv1d"``, ``"conv2d"``
    (apply it with :func:`tf_to_pt_layout`). ``prefix_to_remove`` strips a leading
    PyTorch prefix (e.g. ``"transformer."`` when loading into a base model), and
    ``drop_first_scope=False`` is for names that no longer carry the model scope.

    Example::

        >>> tf_weight_name_to_pt_name(
        ...     "tfmt5_for_conditional_generation/encoder/block_._0/layer_._0/SelfAttention/q/kernel:0",
        ...     (32, 36))
        ('encoder.block.0.layer.0.SelfAttention.q.weight', 'transpose')
        >>> tf_weight_name_to_pt_name(
        ...     "tfmt5_for_conditional_generation/encoder/block_._0/layer_._0/SelfAttention/"
        ...     "relative_attention_bias/embeddings:0", (8, 3))
        ('encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight', 'none')
    """
    name = tf_name.replace(":0", "")
    if name.count("___") > 10 or len(name) > 4096:
        raise ValueError(f"TF weight name is too long to be a real variable name: {tf_name[:200]!r}...")
    scopes = name.split("/")
    # "a___b" in an inner scope stands for "b" (the first and last components are kept).
    scopes = [scope.rsplit("___", 1)[-1] if 0 < i < len(scopes) - 1 else scope for i, scope in enumerate(scopes)]
    scopes = [part for part in "/".join(scopes).replace("_._", "/").split("/") if part]
    if not scopes:
        raise ValueError(f"empty TF weight name {tf_name!r}")
    if drop_first_scope and len(scopes) > 1:
        scopes = scopes[1:]  # the TF model's own name scope

    last = scopes[-1]
    rank = None if tf_shape is None else len(tf_shape)
    if last == "kernel" and rank == 4:
        layout = CONV2D
    elif last == "kernel" and rank == 3:
        layout = CONV1D
    elif last in ("kernel", "pointwise_kernel", "depthwise_kernel") or "emb_projs" in scopes or "out_projs" in scopes:
        layout = TRANSPOSE
    else:
        layout = NO_TRANSPOSE

    scopes[-1] = _SEPARABLE_KERNELS.get(last, _WEIGHT_SUFFIXES.get(last, last))
    pt_name = ".".join(scopes)
    if prefix_to_remove and pt_name.startswith(prefix_to_remove):
        pt_name = pt_name[len(prefix_to_remove) :]
    return pt_name, layout


def tf_to_pt_layout(array: np.ndarray, layout: str) -> np.ndarray:
    """Apply a layout change from :func:`tf_weight_name_to_pt_name`; returns a C-contiguous array.

    Example::

        >>> tf_to_pt_layout(np.zeros((32, 96), np.float32), "transpose").shape
        (96, 32)
    """
    if layout == NO_TRANSPOSE:
        return array
    if layout == TRANSPOSE:
        return np.ascontiguousarray(array.T)
    if layout in _AXES:
        if array.ndim != len(_AXES[layout]):
            raise ValueError(f"{layout} layout needs a rank-{len(_AXES[layout])} kernel, got shape {array.shape}")
        return np.ascontiguousarray(array.transpose(_AXES[layout]))
    raise ValueError(f"unknown layout change {layout!r}")


def _string_list_attribute(group, name: str) -> list[str] | None:
    # Keras splits attributes bigger than the HDF5 header limit into name0, name1, ...
    if name in group.attrs:
        values = list(group.attrs[name])
    elif f"{name}0" in group.attrs:
        values, chunk = [], 0
        while f"{name}{chunk}" in group.attrs:
            values.extend(group.attrs[f"{name}{chunk}"])
            chunk += 1
    else:
        return None
    return [value.decode("utf-8") if isinstance(value, bytes) else str(value) for value in values]


def _read_entries(path: str) -> list[tuple[str, bool, np.ndarray, str]]:
    """Return ``(tf_name, has_model_scope, array, location)`` for each stored dataset."""
    h5py = _require_h5py()
    if not os.path.isfile(path):
        raise FileNotFoundError(f"TF checkpoint not found: {path}")
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise ValueError(f"{path}: cannot open as HDF5 (corrupt or not a tf_model.h5): {error}") from None
    entries = []
    with handle:
        root = handle["model_weights"] if "model_weights" in handle and "layer_names" not in handle.attrs else handle
        layer_names = _string_list_attribute(root, "layer_names")
        if layer_names is None:
            raise ValueError(
                f"{path}: no 'layer_names' attribute: not a Keras-2 / transformers TF weights file "
                "(Keras 3 '.weights.h5' files are not TF checkpoints of transformers)"
            )
        for layer_name in layer_names:
            if layer_name not in root:
                raise ValueError(f"{path}: layer {layer_name!r} is listed in layer_names but not stored")
            item = root[layer_name]
            if isinstance(item, h5py.Dataset):
                # Sharded layout: one dataset per variable, model scope already dropped
                # except for names the writer kept whole (those containing "model.").
                entries.append((layer_name, "model." in layer_name, np.asarray(item[()]), layer_name))
                continue
            for weight_name in _string_list_attribute(item, "weight_names") or []:
                if weight_name not in item:
                    raise ValueError(f"{path}: weight {weight_name!r} of layer {layer_name!r} is listed but not stored")
                entries.append((weight_name, True, np.asarray(item[weight_name][()]), f"{layer_name}/{weight_name}"))
    return entries


def _deduplicate(path: str, named: list[tuple[str, np.ndarray, str]]) -> dict[str, np.ndarray]:
    # Shared variables are saved once per layer that uses them; keep one copy, but a
    # name that maps to two different values means the mapping is ambiguous.
    result: dict[str, np.ndarray] = {}
    seen_at: dict[str, str] = {}
    for name, array, location in named:
        if name in result:
            previous = result[name]
            if previous.shape != array.shape or previous.dtype != array.dtype or not np.array_equal(previous, array):
                raise ValueError(
                    f"{path}: {location!r} and {seen_at[name]!r} both map to {name!r} but hold different values"
                )
            continue
        result[name], seen_at[name] = array, location
    return result


def read_tf_h5_raw(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a ``tf_model.h5`` keyed by TF variable name, in TF layout (for debugging).

    Variables stored several times (shared embeddings) appear once.

    Example::

        >>> raw = read_tf_h5_raw("tests/fixtures/h5_reference/tf/tf_model.h5")
        >>> raw["tfmt5_for_conditional_generation/lm_head/kernel:0"].shape
        (32, 96)
    """
    path = os.fspath(path)
    return _deduplicate(path, [(name, array, location) for name, _, array, location in _read_entries(path)])


def read_tf_h5(path: str | os.PathLike, prefix_to_remove: str = "") -> dict[str, np.ndarray]:
    """Read a ``tf_model.h5`` (or one shard) as ``{pytorch_name: array in PyTorch layout}``.

    Names and layouts follow :func:`tf_weight_name_to_pt_name`; Dense kernels come back
    transposed (``[out, in]``), embeddings and norms unchanged. Arrays keep the stored
    dtype (TF checkpoints are normally float32) and are read into memory.

    Example::

        >>> tensors = read_tf_h5("tests/fixtures/h5_reference/tf/tf_model.h5")
        >>> sorted(tensors)[:2]
        ['decoder.block.0.layer.0.SelfAttention.k.weight', 'decoder.block.0.layer.0.SelfAttention.o.weight']
    """
    path = os.fspath(path)
    converted = []
    for tf_name, has_model_scope, array, location in _read_entries(path):
        pt_name, layout = tf_weight_name_to_pt_name(
            tf_name, array.shape, prefix_to_remove=prefix_to_remove, drop_first_scope=has_model_scope
        )
        converted.append((pt_name, tf_to_pt_layout(array, layout), location))
    return _deduplicate(path, converted)


def read_sharded_tf_h5(index_path: str | os.PathLike, prefix_to_remove: str = "") -> dict[str, np.ndarray]:
    """Read a sharded TF checkpoint from ``tf_model.h5.index.json`` (see :func:`read_tf_h5`).

    Example::

        >>> tensors = read_sharded_tf_h5("mt5/tf_model.h5.index.json")  # doctest: +SKIP
    """
    index_path = os.fspath(index_path)
    _, shard_paths = read_shard_index(index_path)
    tensors: dict[str, np.ndarray] = {}
    for shard_path in shard_paths:
        for name, array in read_tf_h5(shard_path, prefix_to_remove).items():
            if name in tensors and not np.array_equal(tensors[name], array):
                raise ValueError(f"{index_path}: {name!r} appears in several shards with different values")
            tensors[name] = array
    return tensors
