"""Reads the signatures of an exported SavedModel back from `saved_model.pb` (no loading).

Example (any SavedModel; an export's are listed in savedmodel/README.md):
>>> import tempfile
>>> import tensorflow as tf
>>> module = tf.Module()
>>> module.echo = tf.function(lambda text: {"text": text},
...                           input_signature=[tf.TensorSpec([None], tf.string)])
>>> directory = tempfile.mkdtemp()
>>> tf.saved_model.save(module, directory, signatures={"serving_default": module.echo})
>>> signature_specs(directory)["serving_default"]["inputs"]["text"]
('string', [-1])
"""

from tensorflow.core.framework import types_pb2

from savedmodel.op_check import read_saved_model

INTERNAL_SIGNATURES = ("__saved_model_init_op",)


def _dtype_name(enum_value):
    return types_pb2.DataType.Name(enum_value)[len("DT_"):].lower()


def _shape(tensor_info):
    """Dimensions (-1 = any size), or None for an unknown rank (scalar or `[B]` accepted)."""
    shape = tensor_info.tensor_shape
    if shape.unknown_rank:
        return None
    return [int(dim.size) for dim in shape.dim]


def signature_specs(saved_model_dir, tags="serve"):
    """`{signature: {"inputs": {name: (dtype, shape)}, "outputs": {...}, "tensor_names":
    {name: graph tensor name}}}` for every serving signature."""
    proto = read_saved_model(saved_model_dir)
    for meta_graph in proto.meta_graphs:
        if tags not in meta_graph.meta_info_def.tags:
            continue
        specs = {}
        for name, signature in sorted(meta_graph.signature_def.items()):
            if name in INTERNAL_SIGNATURES:
                continue
            specs[name] = {
                "inputs": {k: (_dtype_name(v.dtype), _shape(v)) for k, v in sorted(signature.inputs.items())},
                "outputs": {k: (_dtype_name(v.dtype), _shape(v)) for k, v in sorted(signature.outputs.items())},
                "method": signature.method_name,
            }
        return specs
    raise ValueError(f"{saved_model_dir} has no MetaGraph tagged {tags!r}")


def _format(tensors):
    def shape_text(shape):
        if shape is None:
            return "scalar or [B]"
        return "[" + ", ".join("?" if size < 0 else str(size) for size in shape) + "]"

    return ", ".join(f"{name}: {dtype} {shape_text(shape)}" for name, (dtype, shape) in tensors.items())


def describe_signatures(saved_model_dir):
    """One line per signature: `name(inputs) -> outputs`."""
    lines = []
    for name, spec in signature_specs(saved_model_dir).items():
        lines.append(f"  {name}({_format(spec['inputs'])}) -> {_format(spec['outputs'])}")
    return "\n".join(lines)
