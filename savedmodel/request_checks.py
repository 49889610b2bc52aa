"""In-graph checks of request tensors: a bad request fails with an InvalidArgumentError that
names the problem (TF Serving returns it as the request's error status) instead of a
shape error deep inside the model, and never takes the server down.

Every function here runs inside the exported signature functions (graph mode).
"""

import tensorflow as tf


def assert_that(condition, message_parts):
    """`tf.debugging.Assert` whose message is one joined string (readable in a status)."""
    return tf.debugging.Assert(condition, [tf.strings.join(message_parts)], summarize=1)


def per_example_strings(values, batch_size, name):
    """A string input given as one value (scalar) or one value per example -> `[batch]`.

    Args:
        values: string tensor of any rank (signature spec of unknown rank).
        batch_size: int32 scalar, the number of texts.
        name: the input's name, for the error message.
    """
    flat = tf.reshape(values, [-1])
    count = tf.size(flat, out_type=tf.int32)
    check = assert_that(
        tf.logical_or(tf.equal(count, 1), tf.equal(count, batch_size)),
        [
            f"{name} must be a single value or one value per text: got ",
            tf.strings.as_string(count),
            " values for ",
            tf.strings.as_string(batch_size),
            " texts",
        ],
    )
    with tf.control_dependencies([check]):
        return tf.cond(
            tf.equal(count, batch_size),
            lambda: tf.identity(flat),
            lambda: tf.fill([batch_size], flat[0]),
        )


def request_scalar(values, name):
    """An option given as a scalar, or once per example with the same value everywhere
    (the REST row format repeats it per instance) -> a scalar."""
    flat = tf.reshape(values, [-1])
    count = tf.size(flat, out_type=tf.int32)
    first = tf.gather(tf.concat([flat, tf.zeros([1], flat.dtype)], axis=0), 0)
    same_values = tf.equal(flat, first)
    if flat.dtype.is_floating:  # NaN != NaN; a NaN option is refused by `check_finite`
        same_values = tf.logical_or(same_values, tf.logical_and(tf.math.is_nan(flat), tf.math.is_nan(first)))
    same = tf.reduce_all(same_values)
    check = assert_that(
        tf.logical_and(count > 0, same),
        [f"{name} must be one value for the whole request (a scalar, or the same value for "
         "every instance); got ", tf.strings.as_string(count), " values that differ or none"],
    )
    with tf.control_dependencies([check]):
        return tf.identity(first)


def check_in_range(value, name, minimum, maximum, why=""):
    """Asserts `minimum <= value <= maximum` for an int32 scalar; returns `value`."""
    check = assert_that(
        tf.logical_and(value >= minimum, value <= maximum),
        [f"{name} must be between {minimum} and {maximum}{why}; got ", tf.strings.as_string(value)],
    )
    with tf.control_dependencies([check]):
        return tf.identity(value)


def check_batch_size(batch_size, maximum, signature_name):
    """Asserts the batch fits the largest exported XLA batch bucket."""
    check = assert_that(
        batch_size <= maximum,
        [
            f"{signature_name} accepts at most {maximum} texts per request (the largest batch "
            "it was compiled for); got ",
            tf.strings.as_string(batch_size),
            ". Split the request or use the signature without _xla.",
        ],
    )
    with tf.control_dependencies([check]):
        return tf.identity(batch_size)


def check_finite(value, name):
    """Asserts a float32 scalar is finite (NaN / inf options are refused)."""
    check = assert_that(
        tf.math.is_finite(value),
        [f"{name} must be a finite number; got ", tf.strings.as_string(value)],
    )
    with tf.control_dependencies([check]):
        return tf.identity(value)
