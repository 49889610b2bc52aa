"""Int8 matrices for decoding: int8 weights, and optionally int8 activations.

A decoding step at small batch reads every decoder weight and the LM head once per
generated token, so its speed is the speed of reading weights from memory. Storing them as
int8 with one float32 scale per output channel reads a quarter of the bytes.

The product is taken panel by panel inside a `tf.while_loop`: each iteration widens one
`[panel_rows, in]` int8 panel to the activations' dtype and multiplies by it. The widened
panel (a few MB) stays in cache, so memory traffic is the int8 bytes. Written as one
`matmul(x, cast(W))`, XLA on CPU fuses the cast into the product and runs a slow generic
loop (3-10x slower than float32), and a plain graph materialises the whole float32 copy;
a loop of at least two panels keeps the cast a separate, cache-sized step.

Without XLA (a plain graph, as TF Serving runs by default) a loop costs about a
millisecond of executor overhead, so small matrices are widened in one step, and
generation widens every matrix once per call before its decoding loop
(`widened_int8_matrices`): 0.8-0.9x of the float model's plain-graph speed
(`bench/generate.py`, engine `tfmodels-int8-graph`), with int8 weights at rest.

With `quantize_inputs=True` (the models' `quantize_weights("int8_dynamic")`) each input row
is quantised too, symmetrically to int8 with its own float32 scale taken at run time, and
the product is the int32 sum of int8 products, rescaled: what CTranslate2's int8 mode
computes. Under XLA on CPU that product of several rows is XLA's own int8 dot, which reads
the int8 weights as they are: on 2 threads, 8 rows by mT5's `[250112, 512]` head take 18
instead of 40 ms (weight-only panels) or 39 ms (float32), 32 rows 65 instead of 93 ms, and
8 rows by a 1024x1024 projection 0.2 instead of 0.5 ms. A single row gets a zero second
row, which moves it from XLA's slow int8 matrix-vector kernel to that int8 dot
(`_single_row_dynamic_product`): m2m100_418M batch-1 greedy 25.7 -> 35 tokens/s. The plain
graph keeps the float products of the integer-valued rows. Integer products are exact in
float32 up to 2**24, which covers every sum of 1024 int8 products, so for inputs up to
1024 wide those paths compute the same values.
"""

import contextlib
import threading

import keras
import numpy as np
import tensorflow as tf

from tfmodels.layers.products import (apply_to_rows, in_xla_context, is_single_row,
                                      rows_times_transposed)

# Largest widened panel, in elements (8 MB of float32): measured best for 512-4096-wide
# inputs on a 2-core AVX2 CPU; any size from 2 MB to 16 MB is within 10 %.
PANEL_ELEMENTS = 2**21
# Without XLA each `tf.while_loop` costs about a millisecond of executor overhead, more
# than widening a whole small matrix at once; only matrices at least this large (LM
# heads) loop over panels there.
PLAIN_GRAPH_LOOP_MIN_ELEMENTS = 2**24
MIN_PANEL_ROWS = 16
INT8_MAX = 127.0


def int8_panel_rows(out_dim, in_dim):
    """Rows per panel for an `[out_dim, in_dim]` matrix: a power of two with at most
    `PANEL_ELEMENTS` elements per panel and at least two panels (one panel would let XLA
    fuse the cast into the product, the slow case this layout exists to avoid)."""
    if out_dim < 2 or in_dim < 1:
        raise ValueError(f"int8 panels need out_dim >= 2 and in_dim >= 1, got {out_dim}, {in_dim}")
    limit = max(MIN_PANEL_ROWS, PANEL_ELEMENTS // in_dim)
    limit = min(limit, max(1, out_dim // 2))
    return 1 << (int(limit).bit_length() - 1)


# Rows per chunk when quantising a stored matrix (`quantized_row_chunks`): temporaries of a
# chunk's size (8192 x 1024 float64: 64 MB) instead of copies of a whole LM head.
QUANTIZE_CHUNK_ROWS = 8192


def quantized_row_chunks(owner_name, matrix_oi, shape=None, chunk_rows=None):
    """Symmetric per-row int8 quantisation of a float `[out, in]` matrix (an array, tensor
    or variable), chunk of rows by chunk of rows: yields `(rows [n, in] float32,
    values [n, in] int8, scale [n] float32)` for consecutive chunks, `matrix ≈ values *
    scale[:, None]`: each row's largest magnitude maps to 127, an all-zero row gets scale 1.
    Chunks have `chunk_rows` rows (default `QUANTIZE_CHUNK_ROWS`); each row's result is
    its own, whatever the chunking.

    It runs eagerly in TensorFlow on the matrix as it is stored, so a variable is never
    copied whole to the host (`enable_head_screening` on mt5-small: 1.2-1.4 instead of
    2.6-4.8 s on 2 threads). It is `quantize_input_rows`' rule, op by op; traced into a
    graph, the same ops gave 1-ulp different scales for about 5 % of an LM head's rows.
    Raises a ValueError that names `owner_name` for a matrix that is not `[out, in]` (or
    not `shape`), or that holds a NaN or an infinity (checked chunk by chunk, before the
    caller stores anything).

    Example:
    >>> [(v.numpy().tolist(), s.numpy().tolist()) for _, v, s in quantized_row_chunks(
    ...     "m", np.array([[0.5, -1.0], [0.0, 0.0]], np.float32))]
    [([[64, -127], [0, 0]], [0.007874015718698502, 1.0])]
    """
    if not tf.executing_eagerly():
        raise RuntimeError(f"{owner_name}: quantising stored weights runs eagerly, not traced")
    if isinstance(matrix_oi, keras.Variable):
        matrix_oi = matrix_oi.value
    matrix_oi = tf.convert_to_tensor(matrix_oi)
    wrong_shape = shape is not None and tuple(matrix_oi.shape) != tuple(shape)
    if matrix_oi.shape.rank != 2 or wrong_shape:
        expected = "an [out, in] matrix" if shape is None else f"a {list(shape)} matrix"
        raise ValueError(f"{owner_name}: expected {expected}, got shape {list(matrix_oi.shape)}")
    if not matrix_oi.dtype.is_floating:
        raise ValueError(f"{owner_name}: expected a float matrix, got {matrix_oi.dtype.name}")
    chunk_rows = chunk_rows or QUANTIZE_CHUNK_ROWS
    for start in range(0, matrix_oi.shape[0], chunk_rows):
        rows_ni = tf.cast(matrix_oi[start:start + chunk_rows], tf.float32)
        if not bool(tf.reduce_all(tf.math.is_finite(rows_ni))):
            raise ValueError(f"{owner_name}: cannot quantise a matrix with NaN or infinite values")
        values_ni, scale_n1 = quantize_input_rows(rows_ni)
        yield rows_ni, values_ni, tf.reshape(scale_n1, [-1])


def quantize_rows(matrix_oi):
    """Symmetric per-row int8 quantisation of a float `[out, in]` matrix (an array, tensor
    or variable), as numpy arrays (`quantized_row_chunks`' rule).

    Returns `(int8 [out, in], float32 scale [out])` with `matrix ≈ int8 * scale[:, None]`;
    each row's largest magnitude maps to 127, an all-zero row gets scale 1.

    Example:
    >>> values, scale = quantize_rows(np.array([[0.5, -1.0], [0.0, 0.0]], np.float32))
    >>> values.tolist(), scale.tolist()
    ([[64, -127], [0, 0]], [0.007874015718698502, 1.0])
    """
    values, scale = _quantized_rows("quantize_rows", matrix_oi)
    return values.numpy(), scale.numpy()


def _quantized_rows(owner_name, matrix_oi, shape=None):
    """`quantized_row_chunks`' chunks joined: `(int8 [out, in], float32 scale [out])`
    tensors."""
    chunks = list(quantized_row_chunks(owner_name, matrix_oi, shape))
    return (tf.concat([values for _, values, _ in chunks], 0),
            tf.concat([scale for _, _, scale in chunks], 0))


def quantize_input_rows(inputs_ri):
    """Symmetric per-row int8 quantisation of `[rows, in]` activations, in the graph.

    Returns `(int8 [rows, in], float32 scale [rows, 1])` with `inputs ≈ int8 * scale`, the
    same rule as `quantize_rows` (largest magnitude -> 127, all-zero rows scale 1).

    Example:
    >>> values, scale = quantize_input_rows(tf.constant([[0.5, -1.0], [0.0, 0.0]]))
    >>> values.numpy().tolist(), scale.numpy().ravel().tolist()
    ([[64, -127], [0, 0]], [0.007874015718698502, 1.0])
    """
    inputs_ri = tf.cast(inputs_ri, tf.float32)
    largest_r1 = tf.reduce_max(tf.abs(inputs_ri), axis=1, keepdims=True)
    scale_r1 = tf.where(largest_r1 > 0, largest_r1 / INT8_MAX, tf.ones_like(largest_r1))
    values_ri = tf.clip_by_value(tf.round(inputs_ri / scale_r1), -INT8_MAX, INT8_MAX)
    return tf.cast(values_ri, tf.int8), scale_r1


# Under XLA on CPU the int8 product of a few rows runs 10-25 % faster as
# `matrix @ inputs^T` (`[out, rows]`) than as `inputs @ matrix^T` (2 threads: m2m100's
# `[128112, 1024]` head at 32 rows 32.0 instead of 37.0 ms, a 4096x1024 projection 1.14
# instead of 1.28 ms, at 8 rows 12.0 instead of 14.2 and 0.46 instead of 0.56 ms); at 256
# rows (an encoder's) the `[rows, out]` form is as fast or faster.
OUTPUT_MAJOR_MAX_ROWS = 64


def _output_major_is_faster(rows):
    return in_xla_context() and rows is not None and 2 <= rows <= OUTPUT_MAJOR_MAX_ROWS


_widened = threading.local()  # .matrices: {id(Int8Matrix): widened [out, in] tensor}


@contextlib.contextmanager
def widened_int8_matrices(matrices, dtype):
    """Within the block, calls of `matrices` multiply by float copies of their int8 values
    made here, once, instead of widening panels at every call.

    For code traced without XLA around a decoding loop (`tf.while_loop` in a plain graph):
    the copies are made before the loop, so each step runs plain float products, as fast as
    the float model, while the stored weights stay int8 (a quarter of the bytes at rest).
    """
    previous = getattr(_widened, "matrices", None)
    widened = dict(previous or {})
    for matrix in matrices:
        widened[id(matrix)] = matrix.widened_values(matrix.product_dtype(dtype))
    _widened.matrices = widened
    try:
        yield
    finally:
        _widened.matrices = previous


def attach_sublayer(owner, attribute, layer):
    """Sets `owner.<attribute> = layer` on a built layer, tracked: Keras locks a built
    layer's tracking, and an attached layer must be tracked so that its variables are
    saved and exported with the owner's. Returns `layer`."""
    owner._tracker.unlock()
    setattr(owner, attribute, layer)
    owner._tracker.lock()
    return layer


def detach_sublayer(owner, attribute):
    """Removes `attach_sublayer`'s layer from `owner` and from its tracked layers; the
    attribute falls back to its class default (None)."""
    layer = getattr(owner, attribute, None)
    if layer is None:
        return
    owner._tracker.unlock()
    owner._layers.remove(layer)
    delattr(owner, attribute)
    owner._tracker.lock()


# Set while a model loads a weights file and will make its int8 copies again from the
# loaded float weights (`weights_file_may_lack_copies`).
_loading_before_remaking = threading.local()


@contextlib.contextmanager
def weights_file_may_lack_copies():
    """While active, a copy made from float weights (an `Int8Matrix`, a head's screen)
    whose variables a weights file does not hold keeps its values instead of failing
    the load. Only for a model that makes every such copy again from the loaded float
    weights right after (`Seq2SeqModelBase.load_weights`): without that, the copies
    would stand for the old weights.

    Example:
    >>> with weights_file_may_lack_copies():
    ...     copy_variables_are_missing({})
    True
    >>> copy_variables_are_missing({})
    False
    """
    previous = getattr(_loading_before_remaking, "active", False)
    _loading_before_remaking.active = True
    try:
        yield
    finally:
        _loading_before_remaking.active = previous


def copy_variables_are_missing(store):
    """True when a copy layer's variables may be left out of a load: `store` (the Keras
    weights store's entry for the layer) holds none, and `weights_file_may_lack_copies`
    is active."""
    return getattr(_loading_before_remaking, "active", False) and len(store.keys()) == 0


def attach_int8_matrix(owner, attribute, out_dim, in_dim, quantize_inputs=False):
    """The `Int8Matrix` at `owner.<attribute>`, created (in `owner`'s dtype policy) and
    attached (`attach_sublayer`) if missing, set to quantise its inputs or not."""
    matrix = getattr(owner, attribute, None)
    if matrix is None:
        matrix = attach_sublayer(
            owner, attribute, Int8Matrix(out_dim, in_dim, dtype=owner.dtype_policy, name=attribute))
    matrix.quantize_inputs = bool(quantize_inputs)
    return matrix


@keras.saving.register_keras_serializable(package="tfmodels")
class Int8Matrix(keras.layers.Layer):
    """An `[out_dim, in_dim]` matrix kept as int8 panels plus per-row float32 scales;
    `layer(x)` computes `x @ matrix^T`: `[..., in_dim]` -> `[..., out_dim]`.

    Variables (not trainable): `panels` `[num_panels, panel_rows, in_dim]` int8 (rows past
    `out_dim` are zero padding) and `scale` `[out_dim]` float32. Fill them with `assign`.
    The result is the activations' dtype; it equals `x @ (int8 * scale)^T` up to float
    summation order. With `quantize_inputs=True` it is `quantized(x) @ (int8 * scale)^T`,
    where `quantized(x)` is `quantize_input_rows`' `int8 * scale` (see `prepare_inputs`).

    Example:
    >>> matrix = Int8Matrix(out_dim=3, in_dim=2)
    >>> matrix.assign(np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]], np.float32))
    >>> matrix(tf.constant([[1.0, 1.0]])).numpy().round(2).tolist()
    [[1.0, 2.0, 2.0]]
    """

    def __init__(self, out_dim, in_dim, panel_rows=None, quantize_inputs=False, **kwargs):
        kwargs.setdefault("trainable", False)
        # Computes in the inputs' dtype (its owner's compute dtype); never casts them.
        kwargs["autocast"] = False
        super().__init__(**kwargs)
        self.out_dim = int(out_dim)
        self.in_dim = int(in_dim)
        self.panel_rows = int(panel_rows or int8_panel_rows(self.out_dim, self.in_dim))
        self.num_panels = -(-self.out_dim // self.panel_rows)
        self.quantize_inputs = bool(quantize_inputs)
        if self.num_panels < 2:
            raise ValueError(
                f"Int8Matrix needs at least two panels (out_dim {self.out_dim}, "
                f"panel_rows {self.panel_rows})"
            )
        self.panels = self.add_weight(
            shape=(self.num_panels, self.panel_rows, self.in_dim),
            initializer="zeros",
            dtype="int8",
            trainable=False,
            name="panels",
        )
        # float32 under every policy: a mixed policy's autocast would otherwise hand it
        # out in the compute dtype inside the shared layer trace.
        self.scale = self.add_weight(
            shape=(self.out_dim,), initializer="ones", dtype="float32", trainable=False,
            name="scale", autocast=False,
        )
        self.built = True

    def load_own_variables(self, store):
        if not copy_variables_are_missing(store):  # else remade by the model
            super().load_own_variables(store)

    def assign(self, matrix_oi):
        """Quantises an `[out_dim, in_dim]` float matrix (an array, tensor or variable)
        into the variables (`quantized_row_chunks`)."""
        self.assign_quantized(*_quantized_rows(self.name, matrix_oi, (self.out_dim, self.in_dim)))

    def assign_quantized(self, values, scale):
        """Stores `quantize_rows`' output (arrays or tensors): `[out_dim, in_dim]` int8
        values and `[out_dim]` float32 scales."""
        values = tf.convert_to_tensor(values)
        if tuple(values.shape) != (self.out_dim, self.in_dim) or values.dtype != tf.int8:
            raise ValueError(
                f"{self.name}: expected [{self.out_dim}, {self.in_dim}] int8 values, got "
                f"{values.dtype.name} {list(values.shape)}"
            )
        padding = self.num_panels * self.panel_rows - self.out_dim  # zero rows
        self.panels.assign(tf.reshape(tf.pad(values, [[0, padding], [0, 0]]),
                                      [self.num_panels, self.panel_rows, self.in_dim]))
        self.scale.assign(tf.cast(scale, tf.float32))

    def dequantized(self):
        """The `[out_dim, in_dim]` float32 matrix the int8 values stand for."""
        return self.widened_values(tf.float32) * self.scale[:, tf.newaxis]

    def widened_values(self, dtype):
        """`[out_dim, in_dim]` int8 values as `dtype` (not yet scaled)."""
        return tf.reshape(tf.cast(self.panels, dtype), [-1, self.in_dim])[: self.out_dim]

    def dequantized_rows(self, row_ids):
        """`[len(row_ids), in_dim]` float32: the rows `row_ids` of `dequantized()`."""
        values = tf.gather(tf.reshape(self.panels, [-1, self.in_dim]), row_ids)
        return tf.cast(values, tf.float32) * tf.gather(self.scale, row_ids)[:, tf.newaxis]

    def product_dtype(self, inputs_dtype):
        """The dtype products are taken in: float32 for quantised (integer-valued) inputs,
        whose sums it holds exactly; else the inputs' dtype."""
        return tf.float32 if self.quantize_inputs else tf.as_dtype(inputs_dtype)

    def prepare_inputs(self, inputs):
        """What the product multiplies by the dequantised matrix: `inputs` themselves, or
        with `quantize_inputs` their per-row int8 quantisation as float32 (`int8 * scale`).
        Code that multiplies by `dequantized()` or `dequantized_rows()` itself (the
        restricted LM head) calls this to compute what the layer computes."""
        if not self.quantize_inputs:
            return inputs
        inputs = tf.convert_to_tensor(inputs)
        inputs_ri = tf.reshape(inputs, [-1, self.in_dim])
        values_ri, scale_r1 = quantize_input_rows(inputs_ri)
        return tf.reshape(tf.cast(values_ri, tf.float32) * scale_r1, tf.shape(inputs))

    def call(self, inputs):
        inputs = tf.convert_to_tensor(inputs)
        if inputs.shape.rank is None or inputs.shape[-1] != self.in_dim:
            raise ValueError(
                f"{self.name}: inputs must end in {self.in_dim} features, got {inputs.shape}"
            )
        return apply_to_rows(inputs, self._rows_product, self.out_dim)

    def _rows_product(self, inputs_ri):
        """`[rows, in_dim]` -> `[rows, out_dim]`, scaled."""
        if not self.quantize_inputs:
            return self._unscaled_product(inputs_ri) * tf.cast(self.scale, inputs_ri.dtype)
        values_ri, scale_r1 = quantize_input_rows(inputs_ri)
        if not in_xla_context():
            sums_ro = self._unscaled_product(tf.cast(values_ri, tf.float32))
            return tf.cast(sums_ro * scale_r1 * self.scale, inputs_ri.dtype)
        if is_single_row(inputs_ri):
            outputs_o1 = self._single_row_dynamic_product(values_ri, scale_r1)
            return tf.cast(tf.reshape(outputs_o1, [1, self.out_dim]), inputs_ri.dtype)
        if _output_major_is_faster(inputs_ri.shape[0]):
            outputs_or = self._output_major_dynamic_product(values_ri, scale_r1)
            return tf.cast(tf.transpose(outputs_or), inputs_ri.dtype)
        # All panels, padding rows included (a free reshape; slicing the int8 matrix would
        # copy it), and only the products are cut to `out_dim`.
        values_pi = tf.reshape(self._panels_tensor(), [-1, self.in_dim])
        sums_ro = tf.linalg.matmul(values_ri, values_pi, transpose_b=True,
                                   output_type=tf.int32)[:, : self.out_dim]
        outputs_ro = tf.cast(sums_ro, tf.float32) * scale_r1 * self.scale
        return tf.cast(outputs_ro, inputs_ri.dtype)

    def output_major_is_native(self, num_rows):
        """True when `output_major_product` of `num_rows` (static) rows is computed in
        the `[out, rows]` layout here, False when it would transpose `[rows, out]`."""
        return self.quantize_inputs and _output_major_is_faster(num_rows)

    def output_major_product(self, inputs_ri):
        """`self(inputs_ri)` transposed, `[out_dim, rows]` float32, computed in that layout
        where it is the faster one (`quantize_inputs` matrices under XLA: one row, or
        `output_major_is_native` rows); for consumers that can take it so (the searches
        over a vocabulary, the head's screen)."""
        if self.quantize_inputs and in_xla_context() and is_single_row(inputs_ri):
            return self._single_row_dynamic_product(*quantize_input_rows(inputs_ri))
        if not self.output_major_is_native(inputs_ri.shape[0]):
            return tf.transpose(tf.cast(self(inputs_ri), tf.float32))
        values_ri, scale_r1 = quantize_input_rows(inputs_ri)
        return self._output_major_dynamic_product(values_ri, scale_r1)

    def _single_row_dynamic_product(self, values_1i, scale_11):
        """`[out_dim, 1]` float32: the int8 product of one quantised row, under XLA.

        XLA's CPU kernel for an int8 matrix times one vector is a slow generic loop; with
        a zero second row the same dot runs as its int8 matrix-matrix kernel, which reads
        the int8 weights as they are. On 2 threads (Intel Xeon with AMX), per product:
        m2m100_418M's 1024x4096 feed-forward output 0.20-0.25 instead of 0.85-0.90 ms
        (float panels), its `[128112, 1024]` head 10.2-11.0 instead of 11.9-12.3 ms, mT5's
        head 10.3-11.5 instead of 11.7-12.2 ms, smaller projections within noise
        (`bench/results/generate_2026-12-07_session27_intel_int8_single_row.txt`). The
        integer sums are exact either way, and the rescaling is the several-row one's.
        """
        values_2i = tf.pad(tf.reshape(values_1i, [1, self.in_dim]), [[0, 1], [0, 0]])
        scale_21 = tf.pad(tf.reshape(scale_11, [1, 1]), [[0, 1], [0, 0]], constant_values=1.0)
        return self._output_major_dynamic_product(values_2i, scale_21)[:, :1]

    def _output_major_dynamic_product(self, values_ri, scale_r1):
        """`[out_dim, rows]` float32: the int8 product `matrix @ values^T`, rescaled with
        the same two multiplications, in the same order, as the `[rows, out]` product."""
        values_pi = tf.reshape(self._panels_tensor(), [-1, self.in_dim])
        sums_or = tf.linalg.matmul(values_pi, values_ri, transpose_b=True,
                                   output_type=tf.int32)[: self.out_dim]
        return tf.cast(sums_or, tf.float32) * tf.transpose(scale_r1) * self.scale[:, tf.newaxis]

    def _unscaled_product(self, inputs_ri):
        """`inputs [rows, in_dim] @ int8 values^T` in the inputs' dtype (not yet scaled)."""
        widened = (getattr(_widened, "matrices", None) or {}).get(id(self))
        if widened is None and (
            not in_xla_context() and self.out_dim * self.in_dim < PLAIN_GRAPH_LOOP_MIN_ELEMENTS
        ):
            widened = self.widened_values(inputs_ri.dtype)
        if widened is not None:
            return rows_times_transposed(inputs_ri, tf.cast(widened, inputs_ri.dtype))
        return self._panel_product(inputs_ri)

    def _panels_tensor(self):
        return self.panels.value if hasattr(self.panels, "value") else self.panels

    def _panel_product(self, inputs_ri):
        """`[rows, out_dim]` unscaled, one widened panel per loop iteration."""
        panels = self._panels_tensor()
        num_panels, panel_rows = self.num_panels, self.panel_rows

        def body(index, products):
            panel_pi = tf.cast(tf.gather(panels, index), inputs_ri.dtype)
            return index + 1, products.write(index, tf.matmul(inputs_ri, panel_pi, transpose_b=True))

        products = tf.TensorArray(inputs_ri.dtype, size=num_panels,
                                  element_shape=[None, panel_rows])
        _, products = tf.while_loop(lambda index, _: index < num_panels, body,
                                    (tf.constant(0), products))
        products_nrp = products.stack()  # [panels, rows, panel_rows]
        return tf.reshape(tf.transpose(products_nrp, [1, 0, 2]),
                          [-1, num_panels * panel_rows])[:, : self.out_dim]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.out_dim,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"out_dim": self.out_dim, "in_dim": self.in_dim, "panel_rows": self.panel_rows,
             "quantize_inputs": self.quantize_inputs}
        )
        return config
