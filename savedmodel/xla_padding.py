"""In-graph padding of request tensors to shape buckets (the `*_xla` signatures).

An XLA-compiled function is compiled once per input shape, and compiled code is not
stored in a SavedModel: every new shape after a server (re)start costs a compilation. The
`*_xla` signatures therefore pad the batch and the token length up to a fixed, short list
of sizes (`ExportSettings.batch_buckets` / `source_buckets` / `target_buckets`), so a
server compiles at most `len(batch buckets) * len(length buckets)` programs per signature,
whatever it is sent.
"""

import tensorflow as tf


def bucket_for(size, buckets):
    """The smallest bucket >= `size` (int32 scalar); `size` must not exceed the last one."""
    buckets = tf.constant(buckets, tf.int32)
    fits = tf.cast(buckets >= size, tf.int32)
    return tf.gather(buckets, tf.argmax(fits, output_type=tf.int32))


def pad_rows(tensor, rows):
    """Repeats row 0 until the tensor has `rows` rows (a copy of a real row keeps the
    padded rows well-formed; they are marked inactive and dropped afterwards)."""
    extra = rows - tf.shape(tensor)[0]
    filler = tf.repeat(tensor[:1], extra, axis=0)
    return tf.concat([tensor, filler], axis=0)


def pad_columns(tensor, columns, value):
    """Right-pads a `[batch, length]` tensor with `value` to `columns` columns."""
    extra = columns - tf.shape(tensor)[1]
    return tf.pad(tensor, [[0, 0], [0, extra]], constant_values=value)
