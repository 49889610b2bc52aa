"""The projection layer of every attention and feed-forward block."""

import keras
import numpy as np

from tfmodels.layers.int8_matrix import attach_int8_matrix, detach_sublayer
from tfmodels.layers.products import add_to_product, project_last_axis

# "int8": int8 weights, float activations. "int8_dynamic": int8 activations too, quantised
# per row at run time (see `Int8Matrix`).
WEIGHT_QUANTIZATION_MODES = ("int8", "int8_dynamic")
# "in_out": Keras' `[in, out]` kernel. "out_in": PyTorch's `[out, in]`, which XLA on CPU
# multiplies faster at decoding sizes (see `tfmodels.layers.products`).
KERNEL_LAYOUTS = ("in_out", "out_in")
# The layout of every attention and feed-forward projection. An untied LM head defaults to
# it too and takes either (the model's `lm_head_layout`: "in_out" reads mT5's head 5-17%
# faster for a single row, "out_in" is much faster for several).
PROJECTION_KERNEL_LAYOUT = "out_in"


def check_weight_quantization_mode(mode):
    if mode not in WEIGHT_QUANTIZATION_MODES:
        raise ValueError(
            f"Unknown weight quantization mode {mode!r}; supported: "
            f"{', '.join(WEIGHT_QUANTIZATION_MODES)}"
        )


@keras.saving.register_keras_serializable(package="tfmodels")
class Dense(keras.layers.Dense):
    """`keras.layers.Dense` that can store its kernel `[out, in]` and can run inference
    from a weight-only int8 copy of it (`quantize_weights("int8")`, see `Int8Matrix`).

    `kernel_layout="out_in"` stores the kernel transposed (`[units, in]`, as
    `torch.nn.Linear` does) and computes `x @ kernel^T`; the attention and feed-forward
    projections use it because XLA on CPU decodes faster from that layout. The initializer
    still sees the `[in, out]` shape, so fan-in based initializers keep their meaning.
    Keras' own `quantize()` and LoRA assume `[in, out]` and are refused for "out_in".

    The float kernel stays the layer's trainable weight (checkpoints, training and
    `remove_weight_quantization` use it); once quantised, inference calls read the int8
    copy instead, and training calls raise, since the int8 copy has no gradient.
    `weight_quantization=` quantises the kernel as soon as the layer is built; `get_config`
    records the current mode that way, so saved quantised layers come back quantised.

    Example:
    >>> dense = Dense(4, use_bias=False)
    >>> dense.build((None, 8))
    >>> dense.quantize_weights("int8")
    >>> dense(np.ones([2, 8], np.float32)).shape
    TensorShape([2, 4])
    >>> transposed = Dense(4, kernel_layout="out_in")
    >>> transposed.build((None, 8))
    >>> tuple(transposed.kernel.shape)
    (4, 8)
    """

    int8_kernel = None

    def __init__(self, units, kernel_layout="in_out", weight_quantization=None, **kwargs):
        if kernel_layout not in KERNEL_LAYOUTS:
            raise ValueError(
                f"Unknown kernel_layout {kernel_layout!r}; expected one of {KERNEL_LAYOUTS}"
            )
        if weight_quantization is not None:
            check_weight_quantization_mode(weight_quantization)
        super().__init__(units, **kwargs)
        self.kernel_layout = kernel_layout
        # Applied by `build` (how a saved quantised layer is rebuilt before its int8
        # variables are restored).
        self._weight_quantization_on_build = weight_quantization
        if kernel_layout == "out_in" and (self.lora_rank or self.quantization_mode):
            raise ValueError(
                f"{self.name}: LoRA and Keras quantization need kernel_layout='in_out'"
            )

    def build(self, input_shape):
        if self.kernel_layout == "in_out":
            super().build(input_shape)
        else:
            self._build_out_in(input_shape)
        if self._weight_quantization_on_build:
            self.quantize_weights(self._weight_quantization_on_build)

    def _build_out_in(self, input_shape):
        in_dim = input_shape[-1]
        if in_dim is None:
            raise ValueError(
                f"{self.name}: the last input dimension must be known, got {input_shape}"
            )
        initializer = self.kernel_initializer

        def transposed_initializer(shape, dtype=None):
            return keras.ops.transpose(initializer((shape[1], shape[0]), dtype=dtype))

        self._kernel = self.add_weight(
            name="kernel",
            shape=(self.units, in_dim),
            initializer=transposed_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(self.units,),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
        self.input_spec = keras.layers.InputSpec(min_ndim=2, axes={-1: in_dim})
        self.built = True

    def kernel_out_in(self):
        """The float kernel as an `[out, in]` tensor, whatever the stored layout."""
        kernel = keras.ops.convert_to_tensor(self.kernel)
        return kernel if self.kernel_layout == "out_in" else keras.ops.transpose(kernel)

    def assign_kernel_out_in(self, kernel_oi):
        """Sets the float kernel from an `[out, in]` array, whatever the stored layout."""
        kernel_oi = keras.ops.convert_to_tensor(kernel_oi, self.kernel.dtype)
        self.kernel.assign(kernel_oi if self.kernel_layout == "out_in"
                           else keras.ops.transpose(kernel_oi))

    def enable_lora(self, *args, **kwargs):
        if self.kernel_layout == "out_in":
            raise ValueError(f"{self.name}: LoRA needs kernel_layout='in_out'")
        return super().enable_lora(*args, **kwargs)

    def quantize(self, mode=None, *args, **kwargs):
        if self.kernel_layout == "out_in":
            raise ValueError(
                f"{self.name}: Keras' quantize() needs kernel_layout='in_out'; use the "
                "model's quantize_weights('int8') instead"
            )
        return super().quantize(mode, *args, **kwargs)

    def quantize_weights(self, mode="int8"):
        """Makes inference read an int8 copy of the current kernel (re-quantising it if
        the layer was quantised before); `"int8_dynamic"` quantises the inputs too."""
        check_weight_quantization_mode(mode)
        if not self.built:
            raise ValueError(f"{self.name}: build the layer before quantising its weights")
        kernel_oi = self.kernel_out_in()  # a tensor: quantised without a host copy
        matrix = attach_int8_matrix(self, "int8_kernel", *kernel_oi.shape,
                                    quantize_inputs=mode == "int8_dynamic")
        matrix.assign(kernel_oi)

    def remove_weight_quantization(self):
        """Drops the int8 copy: calls use the float kernel again."""
        detach_sublayer(self, "int8_kernel")

    @property
    def weight_quantization(self):
        """The `quantize_weights` mode inference runs in (`"int8"`, `"int8_dynamic"`), or
        None for the float kernel."""
        if self.int8_kernel is None:
            return None
        return "int8_dynamic" if self.int8_kernel.quantize_inputs else "int8"

    def call(self, inputs, training=None):
        if self.int8_kernel is None:
            if self.kernel_layout == "in_out":
                return super().call(inputs, training=training)
            inputs = keras.ops.convert_to_tensor(inputs, self.compute_dtype)
            outputs = project_last_axis(inputs, keras.ops.cast(self.kernel, inputs.dtype))
            return self._add_bias_and_activation(outputs)
        if training:
            raise ValueError(
                f"{self.name} reads int8 weights, which cannot be trained; call "
                "model.remove_weight_quantization() before training"
            )
        inputs = keras.ops.convert_to_tensor(inputs, self.compute_dtype)
        return self._add_bias_and_activation(self.int8_kernel(inputs))

    def _add_bias_and_activation(self, outputs):
        if self.use_bias:
            outputs = add_to_product(outputs, keras.ops.cast(self.bias, outputs.dtype))
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def get_config(self):
        config = super().get_config()
        config["kernel_layout"] = self.kernel_layout
        if self.weight_quantization:
            config["weight_quantization"] = self.weight_quantization
        return config
