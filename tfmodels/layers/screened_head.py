"""An int8 screen of a float LM head: cheap logits with a guaranteed error bound.

Greedy decoding needs the argmax of `h @ W^T` over the vocabulary, and an LM head is most
of the bytes a decoding step reads (mt5-small: 85 %). The screen keeps an int8 copy of `W`
(per-row scales) and, for every vocabulary row `r`, two float32 constants, so that for any
input row `h` it can bound how far the int8 logit can be from the float one:

    |h . W_r - A_r(h)| <= ||h|| * weight_error_r + ||h - q(h)|| * quantized_norm_r

where `A_r(h)` is the int8 product of `h`'s own int8 quantisation `q(h)` (what
`Int8Matrix(quantize_inputs=True)` computes, exactly, in integers), `weight_error_r` is the
norm of row `r`'s quantisation error and `quantized_norm_r` the norm of its int8 row,
scaled. Both follow from writing `h . W_r - q(h) . Wq_r` as
`h . (W_r - Wq_r) + (h - q(h)) . Wq_r` and bounding each term by Cauchy-Schwarz. The
constants are computed in float64 and widened by margins that cover float32 rounding: of
the norms, of the rescaling, and of the float product itself (at most `2 * in * 2**-24`
relative to `||h|| ||W_r||`, twice the summation-error bound of an `in`-term dot product).

`generation.screening` uses the bounds to find a handful of candidate tokens that must
contain the float argmax, scores only those with the float weights, and checks the
guarantee at every step (falling back to the float head where it does not hold). The
screen reads a quarter of the head's bytes; the answer is the float head's.
"""

import keras
import numpy as np
import tensorflow as tf

from tfmodels.layers.int8_matrix import (Int8Matrix, copy_variables_are_missing, quantize_input_rows,
                                         quantized_row_chunks)

# Relative slack on the stored constants for float32 rounding of the run-time norms and
# sums (each a few ulps; 2**-10 is far above them and costs nothing measurable).
CONSTANT_SLACK = 2.0**-10
# Tokens per row and step `generation.screening` scores with the float head. With random
# weights (the flattest logits a head has) the screen decided 98-99 % of mt5-small's rows
# with 64 and all of them with 128 or 256 (256 rows each); one undecided row sends a whole
# batch-8 step to the float head, which costs more than the wider gather (~1 ms at 8 rows).
DEFAULT_CANDIDATES = 128


def float_product_margin(in_dim):
    """Relative (to `||h|| ||W_r||`) error allowance for float32 products of `in_dim`
    terms: twice the classic `in * u` bound (u = 2**-24), so that two products summed in
    different orders (the candidates' and the plain head's) are both covered."""
    return 2.0 * in_dim * 2.0**-24


@keras.saving.register_keras_serializable(package="tfmodels")
class ScreenedHead(keras.layers.Layer):
    """Int8 screen of a `[vocab, in_dim]` float LM-head matrix (see the module docstring).

    Variables (not trainable): the int8 copy (`screen`, an `Int8Matrix` that quantises its
    inputs), `weight_error` `[vocab]` and `quantized_norm` `[vocab]` float32. Fill them with
    `assign(matrix_oi)`; they are a snapshot of those weights. `candidates`: how many
    tokens per row `generation.screening` scores with the float weights.

    Example:
    >>> weights = np.random.default_rng(0).normal(size=(300, 16)).astype("float32")
    >>> screen = ScreenedHead(300, 16)
    >>> screen.assign(weights)
    >>> hidden = tf.random.normal([2, 16])
    >>> lower_vr, upper_vr = screen.logit_bounds_vocab_major(hidden)
    >>> logits_vr = tf.transpose(hidden @ weights.T)
    >>> bool(tf.reduce_all((lower_vr <= logits_vr) & (logits_vr <= upper_vr)))
    True
    """

    def __init__(self, vocab_size, in_dim, candidates=DEFAULT_CANDIDATES, **kwargs):
        kwargs.setdefault("trainable", False)
        kwargs["autocast"] = False
        super().__init__(**kwargs)
        if self.dtype_policy.name != "float32":
            # The bounds hold for float32 products of float32 weights only.
            raise ValueError(
                f"{self.name}: ScreenedHead works in float32; got dtype "
                f"{self.dtype_policy.name!r} (pass dtype='float32')"
            )
        self.vocab_size = int(vocab_size)
        self.in_dim = int(in_dim)
        self.candidates = int(candidates)
        if self.candidates < 1:
            raise ValueError(f"candidates must be at least 1, got {candidates}")
        self.screen = Int8Matrix(self.vocab_size, self.in_dim, quantize_inputs=True,
                                 dtype="float32", name="screen")
        self.weight_error = self.add_weight(
            shape=(self.vocab_size,), initializer="zeros", dtype="float32", trainable=False,
            name="weight_error",
        )
        self.quantized_norm = self.add_weight(
            shape=(self.vocab_size,), initializer="zeros", dtype="float32", trainable=False,
            name="quantized_norm",
        )
        self.built = True

    def load_own_variables(self, store):
        if not copy_variables_are_missing(store):  # else remade by the model
            super().load_own_variables(store)

    def assign(self, matrix_oi):
        """Quantises `[vocab, in_dim]` float weights (an array, tensor or variable) and
        computes their bound constants, row chunk by row chunk (`quantized_row_chunks`)."""
        margin = float_product_margin(self.in_dim)
        values, scales, weight_errors, quantized_norms = [], [], [], []
        for rows_ni, values_ni, scale_n in quantized_row_chunks(
                self.name, matrix_oi, (self.vocab_size, self.in_dim)):
            weights_ni = tf.cast(rows_ni, tf.float64)
            quantized_ni = tf.cast(values_ni, tf.float64) * tf.cast(scale_n, tf.float64)[:, None]
            weight_errors.append(tf.norm(weights_ni - quantized_ni, axis=1)
                                 + margin * tf.norm(weights_ni, axis=1))
            quantized_norms.append(tf.norm(quantized_ni, axis=1))
            values.append(values_ni)
            scales.append(scale_n)
        self.screen.assign_quantized(tf.concat(values, 0), tf.concat(scales, 0))
        slack = 1 + CONSTANT_SLACK
        self.weight_error.assign(tf.cast(tf.concat(weight_errors, 0) * slack, tf.float32))
        self.quantized_norm.assign(tf.cast(tf.concat(quantized_norms, 0) * slack, tf.float32))

    def logit_bounds_vocab_major(self, inputs_ri):
        """`(lower [vocab, rows], upper [vocab, rows])` float32 bounds on
        `inputs_ri @ W^T` (transposed) for the float `W` the screen was assigned from.

        `[vocab, rows]` is the int8 product's own layout for several rows under XLA
        (`Int8Matrix.output_major_product`), and reductions over the vocabulary then read
        memory in order.
        """
        inputs_ri = tf.convert_to_tensor(inputs_ri, tf.float32)
        if inputs_ri.shape.rank != 2 or inputs_ri.shape[-1] != self.in_dim:
            raise ValueError(
                f"{self.name}: inputs must be [rows, {self.in_dim}], got {inputs_ri.shape}"
            )
        approx_vr = self.screen.output_major_product(inputs_ri)
        values_ri, scale_r1 = quantize_input_rows(inputs_ri)
        rounding_ri = inputs_ri - tf.cast(values_ri, tf.float32) * scale_r1
        input_norm_1r = tf.norm(inputs_ri, axis=1)[tf.newaxis, :]
        rounding_norm_1r = tf.norm(rounding_ri, axis=1)[tf.newaxis, :]
        bound_vr = (self.weight_error[:, tf.newaxis] * input_norm_1r
                    + self.quantized_norm[:, tf.newaxis] * rounding_norm_1r)
        return approx_vr - bound_vr, approx_vr + bound_vr

    def call(self, inputs_ri):
        """`[2, vocab, rows]`: `logit_bounds_vocab_major(inputs_ri)`'s lower and upper
        bounds, stacked (what calling the layer gives; the searches call that method)."""
        return tf.stack(self.logit_bounds_vocab_major(inputs_ri))

    def compute_output_shape(self, input_shape):
        return (2, self.vocab_size, input_shape[0])

    def get_config(self):
        config = super().get_config()
        config.update({"vocab_size": self.vocab_size, "in_dim": self.in_dim,
                       "candidates": self.candidates})
        return config
