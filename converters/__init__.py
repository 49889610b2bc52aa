"""Format-level checkpoint I/O for tfmodels (model-agnostic).

Every reader returns ``{name: numpy array}`` keyed by Hugging Face PyTorch state-dict
names, with tensors in PyTorch layout (a Linear weight is ``[out, in]``). Mapping those
names onto a Keras model is the model files' job; :func:`match_state_dict` does the
strict name/shape check.

Example (the bundled translator, a sharded safetensors checkpoint)::

    >>> from converters import read_checkpoint, match_state_dict
    >>> from tfmodels import BUNDLED_TRANSLATOR_DIR
    >>> tensors, format_name = read_checkpoint(BUNDLED_TRANSLATOR_DIR)
    >>> weights = match_state_dict({"model.shared.weight": (1108, 128)},
    ...                            {"model.shared.weight": tensors["model.shared.weight"]})
    >>> format_name, weights["model.shared.weight"].shape
    ('safetensors_sharded', (1108, 128))

torch is optional (only ``.bin`` files need it); nothing here imports it at load time.
"""

from converters.checkpoint_files import (
    CHECKPOINT_FORMATS,
    BinCheckpointNotAllowedError,
    CheckpointFile,
    find_checkpoint_files,
    read_checkpoint,
    read_json_config,
    write_checkpoint,
)
from converters.safetensors_io import (
    SAFETENSORS_DTYPES,
    parse_size,
    read_safetensors,
    read_safetensors_header,
    read_safetensors_metadata,
    read_sharded_safetensors,
    write_safetensors,
    write_sharded_safetensors,
)
from converters.state_dict import match_state_dict
from converters.tf_h5_io import (
    read_sharded_tf_h5,
    read_tf_h5,
    read_tf_h5_raw,
    tf_to_pt_layout,
    tf_weight_name_to_pt_name,
)
from converters.torch_bin_io import read_sharded_torch_bin, read_torch_bin, write_torch_bin

__all__ = [
    "CHECKPOINT_FORMATS",
    "BinCheckpointNotAllowedError",
    "CheckpointFile",
    "SAFETENSORS_DTYPES",
    "find_checkpoint_files",
    "match_state_dict",
    "parse_size",
    "read_checkpoint",
    "read_json_config",
    "read_safetensors",
    "read_safetensors_header",
    "read_safetensors_metadata",
    "read_sharded_safetensors",
    "read_sharded_tf_h5",
    "read_sharded_torch_bin",
    "read_tf_h5",
    "read_tf_h5_raw",
    "read_torch_bin",
    "tf_to_pt_layout",
    "tf_weight_name_to_pt_name",
    "write_checkpoint",
    "write_safetensors",
    "write_sharded_safetensors",
    "write_torch_bin",
]
