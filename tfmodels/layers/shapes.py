"""Static-where-known tensor dimensions.

A compiled generation plan has static batch and lengths; code that asks `tf.shape(x)[i]`
anyway adds a `Shape`, a `StridedSlice` and three constants per dimension to the graph.
Thousands of those make tracing and XLA's graph conversion several seconds slower, so
layers take each dimension from the static shape when it is known.
"""

import tensorflow as tf


def dimensions(tensor):
    """`tensor`'s dimensions as a list: Python ints where static, int32 scalar tensors (from
    a single `tf.shape`) where not.

    Example:
    >>> dimensions(tf.zeros([2, 3]))
    [2, 3]
    """
    static = tensor.shape.as_list()
    if None not in static:
        return static
    dynamic = tf.shape(tensor)
    return [size if size is not None else dynamic[axis] for axis, size in enumerate(static)]


def dimension(tensor, axis):
    """One dimension of `tensor`: a Python int when static, else an int32 scalar tensor."""
    size = tensor.shape[axis]
    return size if size is not None else tf.shape(tensor)[axis]
