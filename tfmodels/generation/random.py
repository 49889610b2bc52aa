"""Counter-based random numbers that are bit-identical with and without XLA.

TensorFlow's stateless random ops draw different numbers under XLA than in a plain
graph, so sampling would not reproduce across the two paths. Here every random number is
a pure function of `(seed, step, row, column)` computed with uint32 integer arithmetic
(an avalanche hash), which both backends evaluate exactly alike. The stream of a row does
not depend on the batch or buffer padding around it.
"""

import tensorflow as tf

_GOLDEN = 0x9E3779B9


def _mix(bits):
    """32-bit avalanche hash ("lowbias32"): every output bit depends on every input bit."""
    bits = tf.bitwise.bitwise_xor(bits, tf.bitwise.right_shift(bits, tf.constant(16, tf.uint32)))
    bits = bits * tf.constant(0x7FEB352D, tf.uint32)
    bits = tf.bitwise.bitwise_xor(bits, tf.bitwise.right_shift(bits, tf.constant(15, tf.uint32)))
    bits = bits * tf.constant(0x846CA68B, tf.uint32)
    return tf.bitwise.bitwise_xor(bits, tf.bitwise.right_shift(bits, tf.constant(16, tf.uint32)))


def seed_key(seed):
    """Folds a `[2]` int32/uint32 seed into one uint32 key."""
    seed = tf.bitcast(tf.cast(seed, tf.int32), tf.uint32)
    return _mix(_mix(seed[0]) ^ (seed[1] + tf.constant(_GOLDEN, tf.uint32)))


def uniform(key, step, num_rows, num_columns):
    """`[num_rows, num_columns]` float32 uniform in (0, 1), a function of `(key, step)`."""
    step_bits = tf.bitcast(tf.cast(step, tf.int32), tf.uint32)
    step_key = _mix(key ^ _mix(step_bits * tf.constant(_GOLDEN, tf.uint32)))
    rows = tf.cast(tf.range(num_rows, dtype=tf.int32), tf.uint32)
    row_keys = _mix(step_key + rows * tf.constant(0x85EBCA6B, tf.uint32))  # [rows]
    columns = tf.cast(tf.range(num_columns, dtype=tf.int32), tf.uint32)
    bits = _mix(_mix(row_keys[:, tf.newaxis] ^ columns[tf.newaxis, :]) + row_keys[:, tf.newaxis])
    # 24 random bits -> the centre of one of 2**24 equal cells of (0, 1): exact in float32.
    top_bits = tf.cast(tf.bitwise.right_shift(bits, tf.constant(8, tf.uint32)), tf.float32)
    return (top_bits + 0.5) * (1.0 / 16777216.0)


def gumbel(key, step, num_rows, num_columns):
    """Gumbel(0, 1) noise: `argmax(scores + noise)` samples from `softmax(scores)`, and the
    top-k of `scores + noise` samples k items without replacement."""
    return -tf.math.log(-tf.math.log(uniform(key, step, num_rows, num_columns)))
