"""The projection layer of every attention and feed-forward block."""

import keras
import numpy as np

from tfmodels.layers.int8_matrix import attach_int8_matrix, detach_int8_matrix

WEIGHT_QUANTIZATION_MODES = ("int8",)


def check_weight_quantization_mode(mode):
    if mode not in WEIGHT_QUANTIZATION_MODES:
        raise ValueError(
            f"Unknown weight quantization mode {mode!r}; supported: "
            f"{', '.join(WEIGHT_QUANTIZATION_MODES)}"
        )


@keras.saving.register_keras_serializable(package="tfmodels")
class Dense(keras.layers.Dense):
    """`keras.layers.Dense` that can also run inference from a weight-only int8 copy of
    its kernel (`quantize_weights("int8")`, see `Int8Matrix`).

    The float kernel stays the layer's trainable weight (checkpoints, training and
    `remove_weight_quantization` use it); once quantised, inference calls read the int8
    copy instead, and training calls raise, since the int8 copy has no gradient.

    Example:
    >>> dense = Dense(4, use_bias=False)
    >>> dense.build((None, 8))
    >>> dense.quantize_weights("int8")
    >>> dense(np.ones([2, 8], np.float32)).shape
    TensorShape([2, 4])
    """

    int8_kernel = None

    def quantize_weights(self, mode="int8"):
        """Makes inference read an int8 copy of the current kernel (re-quantising it if
        the layer was quantised before)."""
        check_weight_quantization_mode(mode)
        if not self.built:
            raise ValueError(f"{self.name}: build the layer before quantising its weights")
        in_dim, out_dim = self.kernel.shape
        matrix = attach_int8_matrix(self, "int8_kernel", out_dim, in_dim)
        matrix.assign(np.transpose(keras.ops.convert_to_numpy(self.kernel)))

    def remove_weight_quantization(self):
        """Drops the int8 copy: calls use the float kernel again."""
        detach_int8_matrix(self, "int8_kernel")

    @property
    def weight_quantization(self):
        """`"int8"` when inference reads an int8 copy of the kernel, else None."""
        return None if self.int8_kernel is None else "int8"

    def call(self, inputs, training=None):
        if self.int8_kernel is None:
            return super().call(inputs, training=training)
        if training:
            raise ValueError(
                f"{self.name} reads int8 weights, which cannot be trained; call "
                "model.remove_weight_quantization() before training"
            )
        inputs = keras.ops.convert_to_tensor(inputs, self.compute_dtype)
        outputs = self.int8_kernel(inputs)
        if self.use_bias:
            outputs = outputs + keras.ops.cast(self.bias, outputs.dtype)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs
