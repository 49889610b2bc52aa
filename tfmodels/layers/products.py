"""Matrix products against weights stored `[out, in]` (PyTorch's layout).

Under XLA on CPU, `x @ W^T` with `W` stored `[out, in]` is the faster orientation for
decoding-sized inputs: XLA's dot kernels stream each output's weights as one contiguous
row. With the attention and feed-forward kernels stored that way, an m2m100_418M fp32
decoding step at batch 8 takes 114 instead of 149 ms (2 threads), and `bench/generate.py`
reads 62.0 instead of 46.6 tokens/s for batch-8 greedy. Without XLA, TensorFlow's CPU
matmul runs `x W^T` several times slower than `(W x^T)^T` once there are a few rows (the
same speed for a single row), so the plain graph takes the mirrored product there.

Under XLA, a product of a few rows (2-64: beams, small batches) by a large matrix runs as a
batch of products over row panels of the matrix (`[panels, out / panels, in]`, a free
reshape of `[out, in]`): XLA's CPU kernel for one `[out/p, in] x [in, rows]` panel keeps
the panel in cache, where one `[rows, in] x [in, out]` product streams the whole matrix at
well under the memory bandwidth. On 2 threads, 12 x (1024->4096->1024) at 4 rows takes
19.5 instead of 34 ms, 24 x (1024x1024) at 8 rows 14 instead of 29 ms, and an m2m100_418M
decoding step at batch 8 100 instead of 126-141 ms. A single row keeps the plain product
(by an LM head, the row slices below), and so does the plain graph.
A panel product's own output is `[out, rows]`; `output_major_product` returns it as it is,
for consumers that can work in that layout (the decoding searches over the vocabulary).

Under XLA on an AMD processor, a single row by a very large matrix (an LM head) is taken
as `single_row_slices()` independent products over consecutive row slices of the matrix,
concatenated (XLA fuses each slice into its product, so nothing is copied). Each output is
still its row's dot product with the input (summed in the fused kernel's order): same ids.
Two effects, both profiled (xprof) in the decoding loops on 2 threads of an AMD EPYC:
- A sliced product streams faster than the lone one, which XLA runs as one 16-19 ms task
  per step for mt5-small's `[250112, 512]` head; four slices took 3.6-4.0 ms each.
- XLA's CPU runtime hands ready work to another thread only while more than 8 thunks are
  ready at once (its ready-queue split threshold; each hand-off takes half the queue, and
  at most 4 extra threads join one program). Four slices therefore ran one after another
  on one thread; sixteen run as two halves of eight, one per thread (1.7-1.9 ms each).
  On the 2-vCPU machine the numbers below come from, one thread already takes the
  ~36 GB/s a process gets, so the second thread gains about 1 %; where it adds memory
  bandwidth the head should stream faster (not measured here).
mt5-small batch-1 greedy, same process and weights, median tokens/s: 1 -> 4 slices 41.7 ->
46.0, 42.3 -> 46.0, 36.4 -> 40.5 (three runs); 4 -> 16 slices 46.0 -> 46.6, 47.0 -> 47.3,
47.5 -> 47.8, 50.1 -> 50.6 (four runs). m2m100_418M's head (`[128112, 1024]`) neither gains
nor loses (median tokens/s 24.8 / 24.9 for 1 / 4 slices in one run, 26.3 / 26.5 for 4 /
16 in another).
Those numbers are from an AMD EPYC (Zen 4). On an Intel Xeon with AMX (2 vCPUs, 480 MB of
L3) the lone product, which XLA emits with its tiled matrix-vector kernel, is the faster
one and every sliced form (each slice a fused loop) is slower: mt5-small 38.5 / 30.3 /
30.9 / 29.9 tokens/s with 1 / 2 / 4 / 16 slices, m2m100_418M 21.2 / 17.2 with 1 / 16
(best of 9 calls each, same process and weights). So the slices are taken on AMD
processors only (`single_row_slices`).
"""

import functools
import platform

import tensorflow as tf

from tfmodels.layers.shapes import dimensions

# Panel products (see above) for this many rows, for matrices with at least
# `PANEL_PRODUCT_MIN_ELEMENTS` entries, in panels of at most `PANEL_MAX_ELEMENTS` (8 MB of
# float32) and at least `MIN_PANEL_ROWS` rows. Beyond 64 rows the plain product is as fast
# (at 256 rows, faster).
PANEL_PRODUCT_ROWS = (2, 64)
PANEL_PRODUCT_MIN_ELEMENTS = 2**18
PANEL_MAX_ELEMENTS = 2**21
MIN_PANEL_ROWS = 64
# Single-row products under XLA by matrices of at least this many entries (64 MB of
# float32: the LM heads, not the projections) run as `single_row_slices()` independent
# products over row slices (see above). Smaller matrices lose by it: splitting
# m2m100_418M's 4096x1024 feed-forward matrices too made batch-1 greedy 15-25 % slower.
SINGLE_ROW_SLICE_MIN_ELEMENTS = 2**24
# None: `single_row_slices()` decides by the processor; a number fixes the slice count
# (1: the lone product).
SINGLE_ROW_SLICES = None
# 16 = two threads' worth: XLA splits a ready queue of more than 8 thunks in halves, so
# each further thread would need about 8 more slices (not measured: the machine had 2).
AMD_SINGLE_ROW_SLICES = 16


@functools.lru_cache(maxsize=None)
def cpu_vendor():
    """The processor's vendor string (`"AuthenticAMD"`, `"GenuineIntel"`, ...), or "" when
    it cannot be told; read once per process."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("vendor_id"):
                    return line.partition(":")[2].strip()
    except OSError:  # not Linux: the platform's own description, where it names one
        description = platform.processor()
        return next((vendor for vendor in ("AuthenticAMD", "GenuineIntel")
                     if vendor in description), "")
    return ""


def single_row_slices():
    """How many row slices an LM head's single-row product takes under XLA (see the module
    docstring): `SINGLE_ROW_SLICES` when set; otherwise `AMD_SINGLE_ROW_SLICES` on an AMD
    processor, where sliced products streamed faster, and 1 (the lone product) on any
    other, where the one measured (an Intel Xeon) read the head faster unsliced.

    Example:
    >>> single_row_slices() in (1, AMD_SINGLE_ROW_SLICES)
    True
    """
    if SINGLE_ROW_SLICES is not None:
        return max(1, int(SINGLE_ROW_SLICES))
    return AMD_SINGLE_ROW_SLICES if cpu_vendor() == "AuthenticAMD" else 1


def in_xla_context():
    """True while tracing code XLA compiles (`tf.function(jit_compile=True)`)."""
    try:
        from tensorflow.python.framework import ops
        from tensorflow.python.ops import control_flow_util
    except ImportError:  # private modules moved: assume XLA; both products are correct
        return True
    return bool(control_flow_util.GraphOrParentsInXlaContext(ops.get_default_graph()))


def optimization_barrier(*tensors):
    """The tensors through XLA's optimisation barrier (under XLA; as they are elsewhere):
    XLA neither fuses nor rewrites computations across it. Returns a tuple."""
    if not in_xla_context():
        return tensors
    from tensorflow.compiler.tf2xla.python import xla

    return tuple(xla.optimization_barrier(*tensors))


def rows_times_transposed(inputs_ri, matrix_oi):
    """`inputs [rows, in] @ matrix [out, in]^T` -> `[rows, out]`, in the orientation the
    current context (XLA or plain graph) runs fastest.

    Example:
    >>> rows_times_transposed(tf.ones([2, 3]), tf.ones([4, 3])).shape
    TensorShape([2, 4])
    """
    if in_xla_context():
        mirrored = output_major_is_native(inputs_ri.shape[0], matrix_oi)  # panels
    else:
        mirrored = not is_single_row(inputs_ri)
    if mirrored:
        return tf.transpose(output_major_product(inputs_ri, matrix_oi))
    if in_xla_context() and _takes_row_slices(inputs_ri, matrix_oi):
        return sliced_single_row_product(inputs_ri, matrix_oi)
    return tf.matmul(inputs_ri, matrix_oi, transpose_b=True)


def _takes_row_slices(inputs_ri, matrix_oi):
    """True for a (static) single row by a matrix of at least
    `SINGLE_ROW_SLICE_MIN_ELEMENTS` entries, where `single_row_slices()` is more than 1."""
    elements = matrix_oi.shape.num_elements()  # None unless static
    return (is_single_row(inputs_ri) and elements is not None
            and elements >= SINGLE_ROW_SLICE_MIN_ELEMENTS and single_row_slices() > 1)


def sliced_single_row_product(inputs_1i, matrix_oi, slices=None):
    """`inputs [1, in] @ matrix [out, in]^T` -> `[1, out]`, as `slices` (default
    `single_row_slices()`; at most `out`) independent products over consecutive row slices
    of the matrix, concatenated (what `rows_times_transposed` takes under XLA for a single
    row by an LM head, where it takes more than one).

    Example:
    >>> sliced_single_row_product(tf.ones([1, 3]), tf.ones([6, 3]), slices=4).numpy()
    array([[3., 3., 3., 3., 3., 3.]], dtype=float32)
    """
    out_dim = matrix_oi.shape[0]
    slices = single_row_slices() if slices is None else slices
    slices = max(1, min(slices, out_dim))  # no empty slices for tiny matrices
    bounds = [out_dim * index // slices for index in range(slices + 1)]
    outputs = [
        tf.matmul(inputs_1i, matrix_oi[start:stop], transpose_b=True)
        for start, stop in zip(bounds[:-1], bounds[1:])
    ]
    return tf.concat(outputs, axis=1)


def output_major_is_native(num_rows, matrix_oi):
    """True when `output_major_product` of `num_rows` (static) rows by `matrix_oi` is the
    product's own layout here (a panel product under XLA), False when it would be a
    transpose of `[rows, out]`.

    Consumers that can work on `[out, rows]` (the decoding searches over a vocabulary)
    ask this while tracing: XLA's CPU loops read a transposed `[rows, vocab]` at a stride
    of `rows` floats, which for mT5's head at 32 rows costs two 20 ms passes per beam
    step, where the same work on `[vocab, rows]` reads memory in order.
    """
    return in_xla_context() and _product_panel_rows(num_rows, matrix_oi) is not None


def output_major_product(inputs_ri, matrix_oi):
    """`(inputs [rows, in] @ matrix [out, in]^T)^T` -> `[out, rows]`; no transpose is
    computed where `output_major_is_native`.

    Example:
    >>> output_major_product(tf.ones([2, 3]), tf.ones([4, 3])).shape
    TensorShape([4, 2])
    """
    if in_xla_context():
        panel_rows = _product_panel_rows(inputs_ri.shape[0], matrix_oi)
        if panel_rows is not None:
            return _panel_product(inputs_ri, matrix_oi, panel_rows)
    return tf.matmul(matrix_oi, inputs_ri, transpose_b=True)


def panel_rows_for(out_dim, in_dim):
    """Rows per panel of an `[out_dim, in_dim]` matrix in a panel product: the largest
    divisor of `out_dim` (so panels are a free reshape) that keeps a panel within
    `PANEL_MAX_ELEMENTS` and makes at least two panels; None if that divisor is below
    `MIN_PANEL_ROWS`.

    Example:
    >>> panel_rows_for(4096, 1024), panel_rows_for(250112, 512), panel_rows_for(4099, 1024)
    (2048, 3908, None)
    """
    limit = min(PANEL_MAX_ELEMENTS // max(1, in_dim), out_dim // 2)
    for rows in range(limit, MIN_PANEL_ROWS - 1, -1):
        if out_dim % rows == 0:
            return rows
    return None


def _product_panel_rows(rows, matrix_oi):
    """`panel_rows_for` the matrix when a product of `rows` rows by it qualifies for panels
    (static shapes only: the choice is made while tracing), else None."""
    out_dim, in_dim = matrix_oi.shape
    if rows is None or out_dim is None or in_dim is None:
        return None
    low, high = PANEL_PRODUCT_ROWS
    if not low <= rows <= high or out_dim * in_dim < PANEL_PRODUCT_MIN_ELEMENTS:
        return None
    return panel_rows_for(out_dim, in_dim)


def _panel_product(inputs_ri, matrix_oi, panel_rows):
    """`matrix [out, in] @ inputs [rows, in]^T` -> `[out, rows]`, as one batched product
    over row panels (the panels' outputs, reshaped for free)."""
    out_dim, in_dim = matrix_oi.shape
    rows = inputs_ri.shape[0]
    num_panels = out_dim // panel_rows
    panels_pqi = tf.reshape(matrix_oi, [num_panels, panel_rows, in_dim])
    inputs_pir = tf.broadcast_to(tf.transpose(inputs_ri)[tf.newaxis], [num_panels, in_dim, rows])
    outputs_pqr = tf.matmul(panels_pqi, inputs_pir)  # [panels, panel_rows, rows]
    return tf.reshape(outputs_pqr, [out_dim, rows])


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
    if is_single_row(product) and in_xla_context():
        return product - tf.negative(addend)
    return product + addend


def is_single_row(product):
    """True when every axis of `product` but the last is statically 1."""
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
