"""Multi-head attention shared by every model family, with a static-size KV cache."""

import keras
import tensorflow as tf

from tfmodels.layers.dense import PROJECTION_KERNEL_LAYOUT, Dense
from tfmodels.layers.initializers import (
    clone_initializer,
    get_optional_initializer,
    serialize_optional_initializer,
)
from tfmodels.layers.products import in_xla_context
from tfmodels.layers.shapes import dimension, dimensions

try:  # XLA's own dynamic-update-slice; a private module, so a select stands in without it
    from tensorflow.compiler.tf2xla.python.xla import (
        dynamic_update_slice as _xla_dynamic_update_slice,
    )
except ImportError:  # pragma: no cover
    _xla_dynamic_update_slice = None

# Additive bias for masked positions. The most negative float32, as the reference uses, so
# a row with every key masked degrades to a uniform average instead of NaN.
MASKED_BIAS = tf.float32.min


def mask_to_bias(keep_mask):
    """Turns a boolean "may attend" mask into an additive float32 bias (0 or MASKED_BIAS)."""
    return tf.where(keep_mask, tf.constant(0.0, tf.float32), tf.constant(MASKED_BIAS, tf.float32))


@keras.saving.register_keras_serializable(package="tfmodels")
class MultiHeadAttention(keras.layers.Layer):
    """Scaled (or unscaled, T5-style) dot-product attention over `num_heads` heads.

    The caller passes everything position- or mask-related as one additive float32
    `attention_bias` broadcastable to `[batch, heads, query_len, key_len]`, so the layer
    itself is the same for relative-bias (T5) and absolute-position (M2M100) models.

    Key/value caches are `(key, value)` pairs shaped `[batch, heads, cache_len, head_dim]`:
    - self-attention while decoding: pass `cache` and the int32 scalar `cache_index`; the
      new keys/values are written at `cache_index` (static shape, XLA-friendly) and the
      updated cache is returned;
    - cross-attention: pass `cache` without `cache_index`; it holds the encoder's projected
      keys/values (from `project_key_value`) and is used as is. It may have fewer rows
      than the queries (`[groups, ...]` for `groups * members` query rows, a search's
      beams of one input being consecutive rows): each group's members then share their
      group's keys, values and `attention_bias` (`[groups, 1, 1 or query_len, key_len]`).

    Each projection draws from its own copy of `kernel_initializer`
    (`query_kernel_initializer` for the query when given: T5 folds its missing
    1/sqrt(head_dim) score scaling into the query's initial scale).

    Example:
    >>> attention = MultiHeadAttention(num_heads=2, head_dim=4, hidden_dim=8)
    >>> output, weights, cache = attention(tf.zeros([1, 3, 8]))
    >>> output.shape
    TensorShape([1, 3, 8])
    """

    def __init__(
        self,
        num_heads,
        head_dim,
        hidden_dim,
        use_bias=False,
        scale_queries=False,
        dropout=0.0,
        kernel_initializer="glorot_uniform",
        query_kernel_initializer=None,
        **kwargs,
    ):
        # Float32 attention biases must not be autocast to the compute dtype (bfloat16
        # turns the mask value into -inf); inputs arrive in the compute dtype already.
        kwargs["autocast"] = False
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.hidden_dim = hidden_dim
        self.use_bias = use_bias
        self.scale_queries = scale_queries
        self.dropout = dropout
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        # T5 does not scale its queries; it folds 1/sqrt(head_dim) into the query kernel's
        # initialisation instead, so the query projection may have its own initializer.
        self.query_kernel_initializer = get_optional_initializer(query_kernel_initializer)
        inner_dim = num_heads * head_dim

        def dense(units, name, initializer=None):
            return Dense(
                units,
                kernel_layout=PROJECTION_KERNEL_LAYOUT,
                use_bias=use_bias,
                kernel_initializer=clone_initializer(initializer or self.kernel_initializer),
                dtype=self.dtype_policy,
                name=name,
            )

        self.query_dense = dense(inner_dim, "query", self.query_kernel_initializer)
        self.key_dense = dense(inner_dim, "key")
        self.value_dense = dense(inner_dim, "value")
        self.output_dense = dense(hidden_dim, "output")
        self.dropout_layer = keras.layers.Dropout(dropout, dtype=self.dtype_policy)

    # Argument names are `call()`'s plus `_shape`: Keras matches them when it builds the
    # layer on its first call.
    def build(self, query_states_shape, key_value_states_shape=None):
        key_value_states_shape = key_value_states_shape or query_states_shape
        self.query_dense.build(query_states_shape)
        self.key_dense.build(key_value_states_shape)
        self.value_dense.build(key_value_states_shape)
        self.output_dense.build(
            tuple(query_states_shape[:-1]) + (self.num_heads * self.head_dim,)
        )
        super().build(query_states_shape)

    def _split_heads(self, projected):
        # [batch, length, heads * head_dim] -> [batch, heads, length, head_dim]
        batch, length, _ = dimensions(projected)
        split = tf.reshape(projected, [batch, length, self.num_heads, self.head_dim])
        return tf.transpose(split, [0, 2, 1, 3])

    def project_key_value(self, key_value_states):
        """Projects encoder states once into the `(key, value)` cache for cross-attention."""
        return (
            self._split_heads(self.key_dense(key_value_states)),
            self._split_heads(self.value_dense(key_value_states)),
        )

    def call(
        self,
        query_states,
        key_value_states=None,
        attention_bias=None,
        cache=None,
        cache_index=None,
        training=False,
        return_attention_weights=False,
    ):
        query_bhqd = self._split_heads(self.query_dense(query_states))
        if self.scale_queries:
            query_bhqd = query_bhqd * tf.cast(self.head_dim**-0.5, query_bhqd.dtype)

        updated_cache = None
        if cache is not None and cache_index is None:
            key_bhkd, value_bhkd = cache  # precomputed cross-attention keys/values
        else:
            source = query_states if key_value_states is None else key_value_states
            key_bhkd, value_bhkd = self.project_key_value(source)
            if cache is not None:
                # Write this step's keys/values into the static cache at `cache_index`.
                start = [0, 0, tf.cast(cache_index, tf.int32), 0]
                key_bhkd = tf.cast(key_bhkd, cache[0].dtype)
                value_bhkd = tf.cast(value_bhkd, cache[1].dtype)
                key_bhkd = _dynamic_update_slice(cache[0], key_bhkd, start)
                value_bhkd = _dynamic_update_slice(cache[1], value_bhkd, start)
                updated_cache = (key_bhkd, value_bhkd)

        key_bhkd = tf.cast(key_bhkd, query_bhqd.dtype)
        value_bhkd = tf.cast(value_bhkd, query_bhqd.dtype)
        # Precomputed keys/values with fewer rows than the queries (a search's beams or
        # samples of one input share them): each input's rows attend as one group.
        query_rows = query_bhqd.shape[0]
        grouped = cache is not None and cache_index is None and (
            query_rows is None or query_rows != key_bhkd.shape[0]
        )
        attend = self._attend_grouped if grouped else self._attend
        context_bhqd, weights_bhqk = attend(
            query_bhqd, key_bhkd, value_bhkd, attention_bias, training
        )
        output = self.output_dense(self._merge_heads(context_bhqd))
        return output, (weights_bhqk if return_attention_weights else None), updated_cache

    def _attend(self, query_bhqd, key_bhkd, value_bhkd, attention_bias, training):
        """`(context [batch, heads, q_len, head_dim], weights [batch, heads, q_len, k_len])`
        of queries against keys/values with the same leading axes."""
        single_query = _is_single_query(query_bhqd)
        if single_query:
            scores_bhqk = _single_query_scores(query_bhqd, key_bhkd)
        else:
            scores_bhqk = tf.matmul(query_bhqd, key_bhkd, transpose_b=True)
        # Bias and softmax in float32: the mask bias does not fit bfloat16 ranges cleanly
        # and the normaliser is where low precision hurts most.
        scores_bhqk = tf.cast(scores_bhqk, tf.float32)
        if attention_bias is not None:
            scores_bhqk = scores_bhqk + attention_bias
        weights_bhqk = tf.cast(tf.nn.softmax(scores_bhqk, axis=-1), query_bhqd.dtype)
        dropped_bhqk = self.dropout_layer(weights_bhqk, training=training)
        if single_query:
            return _single_query_context(dropped_bhqk, value_bhkd), weights_bhqk
        return tf.matmul(dropped_bhqk, value_bhkd), weights_bhqk

    def _merge_heads(self, context_bhqd):
        # [batch, heads, length, head_dim] -> [batch, length, heads * head_dim]
        batch, _, query_length, _ = dimensions(context_bhqd)
        return tf.reshape(
            tf.transpose(context_bhqd, [0, 2, 1, 3]),
            [batch, query_length, self.num_heads * self.head_dim],
        )

    def _attend_grouped(self, query_bhqd, key_gbkd, value_gbkd, attention_bias, training):
        """Attention of `[groups * members, heads, q_len, head_dim]` queries to keys and
        values `[groups, heads, k_len, head_dim]` that each group's members share; the bias
        is per group (`[groups, 1, 1 or q_len, k_len]`, or broadcastable).

        The members' queries go into one product per group and head, `[members * q_len,
        k_len]`, instead of `members` products against copies of the same keys: a beam
        search keeps one copy of the encoder's keys and values per input instead of per
        beam (m2m100_418M at 8 x 4 beams: 25 instead of 100 MB read per step). Returns
        `(context [groups * members, heads, q_len, head_dim], weights [..., k_len])`.
        """
        rows, heads, query_length, head_dim = dimensions(query_bhqd)
        groups = dimension(key_gbkd, 0)
        if isinstance(rows, int) and isinstance(groups, int) and rows % groups:
            raise ValueError(
                f"{self.name}: {rows} query rows cannot share a precomputed key/value cache "
                f"of {groups} rows (it needs one row per group of consecutive query rows)"
            )
        members = rows // groups
        # [groups, members, heads, q, d] -> [groups, heads, members * q, d]
        query_ghmd = tf.reshape(
            tf.transpose(tf.reshape(query_bhqd, [groups, members, heads, query_length, head_dim]),
                         [0, 2, 1, 3, 4]),
            [groups, heads, members * query_length, head_dim],
        )
        context_ghmd, weights_ghmk = self._attend(
            query_ghmd, key_gbkd, value_gbkd, attention_bias, training
        )

        def ungroup(tensor_ghmx):
            last = dimension(tensor_ghmx, 3)
            split = tf.reshape(tensor_ghmx, [groups, heads, members, query_length, last])
            return tf.reshape(tf.transpose(split, [0, 2, 1, 3, 4]),
                              [rows, heads, query_length, last])

        return ungroup(context_ghmd), ungroup(weights_ghmk)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "head_dim": self.head_dim,
                "hidden_dim": self.hidden_dim,
                "use_bias": self.use_bias,
                "scale_queries": self.scale_queries,
                "dropout": self.dropout,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "query_kernel_initializer": serialize_optional_initializer(
                    self.query_kernel_initializer
                ),
            }
        )
        return config


def _is_single_query(query_bhqd):
    """True for one query of one row (batch-1 greedy or sampled decoding) under XLA.

    XLA's CPU backend compiles every matrix-vector product into a kernel of its own (it
    reuses kernels only for identical fusions), and attention's two products per layer
    are such products at batch 1: 48 of the 145 product kernels m2m100_418M's batch-1
    greedy search compiles. As a multiply and a sum they become fusions that all layers
    share. `bench/compile_breakdown.py --runs 3 --settings 1x1` (2 threads): LLVM work
    2.37 -> 1.84 CPU-seconds and XLA's backend phase 1.67 -> 1.39 s for m2m100_418M,
    1.81 -> 1.41 and 1.34 -> 1.13 s for mt5-small; later calls take as long as before.
    With more rows the products stay: at batch 8 the sums made each call 2-4 % slower.
    """
    batch, _, query_length, _ = query_bhqd.shape
    return batch == 1 and query_length == 1 and in_xla_context()


def _single_query_scores(query_bhqd, key_bhkd):
    """`query @ key^T` for one query (see `_is_single_query`), summed in float32."""
    products_bhkd = tf.cast(query_bhqd, tf.float32) * tf.cast(key_bhkd, tf.float32)
    return tf.reduce_sum(products_bhkd, axis=-1)[:, :, tf.newaxis, :]  # [1, heads, 1, k_len]


def _single_query_context(weights_bhqk, value_bhkd):
    """`weights @ value` for one query (see `_is_single_query`), summed in float32."""
    weights_bhk1 = tf.cast(tf.linalg.matrix_transpose(weights_bhqk), tf.float32)
    context_bhqd = tf.reduce_sum(weights_bhk1 * tf.cast(value_bhkd, tf.float32), axis=2,
                                 keepdims=True)
    return tf.cast(context_bhqd, value_bhkd.dtype)


def _dynamic_update_slice(tensor, update, start_indices):
    """Writes `update` `[batch, heads, new_len, head_dim]` into the cache `tensor`
    `[batch, heads, cache_len, head_dim]` at time position `start_indices[2]` (an int32
    scalar that may be a loop variable; the other start indices must be 0).

    Under XLA it is XLA's own dynamic-update-slice, which updates the loop-carried cache in
    place: only the new positions are written. Elsewhere it is a select over the time axis,
    one fused elementwise kernel in a plain graph (TensorStridedSliceUpdate would need a
    constant begin inside a while loop there). The values written are exactly `update`.
    """
    position = tf.cast(start_indices[2], tf.int32)
    if _xla_dynamic_update_slice is not None and in_xla_context():
        zero = tf.constant(0, tf.int32)
        return _xla_dynamic_update_slice(tensor, update, tf.stack([zero, zero, position, zero]))
    cache_len = dimension(tensor, 2)
    new_len = dimension(update, 2)
    slots = tf.range(cache_len, dtype=tf.int32)
    in_window = tf.logical_and(slots >= position, slots < position + new_len)
    if update.shape[2] == 1:
        spread = update  # broadcasts over the time axis
    else:
        offsets = tf.clip_by_value(slots - position, 0, new_len - 1)
        spread = tf.gather(update, offsets, axis=2)
    return tf.where(in_window[tf.newaxis, tf.newaxis, :, tf.newaxis], spread, tensor)
