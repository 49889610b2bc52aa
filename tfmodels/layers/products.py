"""Matrix products against weights stored `[out, in]` (PyTorch's layout).

Under XLA on CPU, `x @ W^T` with `W` stored `[out, in]` is the faster orientation for
decoding-sized inputs: XLA's dot kernels stream each output's weights as one contiguous
row. With the attention and feed-forward kernels stored that way, an m2m100_418M fp32
decoding step at batch 8 takes 114 instead of 149 ms (2 threads), and `bench/generate.py`
reads 62.0 instead of 46.6 tokens/s for batch-8 greedy. Without XLA, TensorFlow's CPU
matmul runs `x W^T` several times slower than `(W x^T)^T` once there are a few rows (the
same speed for a single row), so the plain graph takes the mirrored product there.
"""

import tensorflow as tf

from tfmodels.layers.shapes import dimensions


def in_xla_context():
    """True while tracing code XLA compiles (`tf.function(jit_compile=True)`)."""
    try:
        from tensorflow.python.framework import ops
        from tensorflow.python.ops import control_flow_util
    except ImportError:  # private modules moved: assume XLA; both products are correct
        return True
    return bool(control_flow_util.GraphOrParentsInXlaContext(ops.get_default_graph()))


def rows_times_transposed(inputs_ri, matrix_oi):
    """`inputs [rows, in] @ matrix [out, in]^T` -> `[rows, out]`, in the orientation the
    current context (XLA or plain graph) runs fastest.

    Example:
    >>> rows_times_transposed(tf.ones([2, 3]), tf.ones([4, 3])).shape
    TensorShape([2, 4])
    """
    if in_xla_context() or _is_single_row(inputs_ri):
        return tf.matmul(inputs_ri, matrix_oi, transpose_b=True)
    return tf.transpose(tf.matmul(matrix_oi, inputs_ri, transpose_b=True))


def add_to_product(product, addend):
    """`product + addend`, for the output of a matrix product (a bias, a residual).

    For a single row under XLA it is written `product - (-addend)`, which gives the same
    bits: XLA's CPU backend fuses a matrix-vector product into the add that consumes it and
    emits that fusion as a single-threaded loop, while a product left alone runs on Eigen's
    multi-threaded kernel. On 2 threads a single-row 1024x4096 projection with a bias
    streams its weights at 28 instead of 20 GB/s that way. A subtract is not fused. Products
    of several rows are not fused either way and keep the plain add.

    Example:
    >>> add_to_product(tf.constant([1.0, 2.0]), tf.constant([0.5, 0.25])).numpy()
    array([1.5 , 2.25], dtype=float32)
    """
    if _is_single_row(product) and in_xla_context():
        return product - tf.negative(addend)
    return product + addend


def _is_single_row(product):
    leading = product.shape[:-1]
    return leading.is_fully_defined() and leading.num_elements() == 1


def apply_to_rows(inputs, rows_fn, out_dim):
    """`rows_fn` (`[rows, in]` -> `[rows, out_dim]`) applied to `inputs [..., in]`: leading
    axes are folded into rows for one 2-D product and unfolded after (static where known).

    Example:
    >>> apply_to_rows(tf.ones([2, 5, 3]), lambda rows: rows[:, :1] * 2.0, 1).shape
    TensorShape([2, 5, 1])
    """
    if inputs.shape.rank == 2:
        return rows_fn(inputs)
    leading = dimensions(inputs)[:-1]
    outputs_ro = rows_fn(tf.reshape(inputs, [-1, inputs.shape[-1]]))
    return tf.reshape(outputs_ro, leading + [out_dim])


def project_last_axis(inputs, matrix_oi):
    """`inputs [..., in] @ matrix [out, in]^T` -> `[..., out]`, as one 2-D product (an einsum
    over a rank-3 input lowers to a far slower XLA program on CPU).

    Example:
    >>> project_last_axis(tf.ones([2, 5, 3]), tf.ones([4, 3])).shape
    TensorShape([2, 5, 4])
    """
    return apply_to_rows(
        inputs, lambda inputs_ri: rows_times_transposed(inputs_ri, matrix_oi), matrix_oi.shape[0]
    )
