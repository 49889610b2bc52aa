"""Exact top-k over very long rows (a vocabulary, or beams x vocabulary), fast on CPU.

`tf.math.top_k` over a 1M-wide row lowers to a partial sort per row, which on CPU costs
more than the decoder step it follows. The k largest entries of a row always lie in the
k blocks (of `block_size` entries) with the largest block maxima: an entry outside those
blocks has k block maxima at least as large above it. So: one vectorised max-reduce over
the row, a top-k over the block maxima, and a top-k over the k selected blocks. Blocks
are visited in index order, so ties resolve to the lower index as in `tf.math.top_k`.
The block size is a divisor of the row width near `DEFAULT_BLOCK_SIZE` where one exists,
so the row is a free reshape instead of a padded copy (m2m100's beams x vocabulary,
4 x 128112, takes blocks of 272).
"""

import tensorflow as tf

DEFAULT_BLOCK_SIZE = 256


def block_size_for(width, preferred=DEFAULT_BLOCK_SIZE):
    """The divisor of `width` in `[preferred / 2, 2 * preferred]` closest to `preferred`,
    or `preferred` itself (rows are then padded) when there is none.

    Example:
    >>> block_size_for(4 * 128112), block_size_for(4 * 250112), block_size_for(100003)
    (272, 256, 256)
    """
    divisors = [size for size in range(preferred // 2, 2 * preferred + 1) if width % size == 0]
    return min(divisors, key=lambda size: (abs(size - preferred), size)) if divisors else preferred


def top_k(values, k, block_size=None):
    """`(top values, their indices)` of `values` `[rows, width]` along the last axis,
    sorted descending; the same result as `tf.math.top_k(values, k)`.

    Example:
    >>> scores = tf.random.normal([2, 100000])
    >>> best, where = top_k(scores, 8)
    >>> bool(tf.reduce_all(where == tf.math.top_k(scores, 8).indices))
    True
    """
    width = values.shape[-1]
    if block_size is None and width is not None:
        block_size = block_size_for(width)
    if width is None or width < 16 * block_size or k > width // block_size:
        best = tf.math.top_k(values, k=k)
        return best.values, best.indices
    num_blocks = -(-width // block_size)
    padding = num_blocks * block_size - width
    if padding:
        values_padded = tf.pad(values, [[0, 0], [0, padding]], constant_values=float("-inf"))
    else:
        values_padded = values
    blocks = tf.reshape(values_padded, [-1, num_blocks, block_size])  # [rows, blocks, size]
    block_max = tf.reduce_max(blocks, axis=-1)  # [rows, blocks]
    best_blocks = tf.sort(tf.math.top_k(block_max, k=k).indices, axis=-1)  # [rows, k]
    candidates = tf.reshape(tf.gather(blocks, best_blocks, batch_dims=1), [-1, k * block_size])
    best_values, positions = tf.math.top_k(candidates, k=k)
    block_of = tf.gather(best_blocks, positions // block_size, batch_dims=1)
    return best_values, block_of * block_size + positions % block_size


def top_k_vocab_major(values_vr, members, k):
    """`top_k` of each group's row when the rows come vocabulary-major.

    `values_vr` is `[width, rows]`, its columns `members` at a time forming a group (a
    beam search's `[vocab, batch * beams]` scores, `members = beams`): group `g`'s row is
    its members' columns laid end to end, entry `m * width + v` being
    `values_vr[v, g * members + m]`. Returns `(top values [groups, k], their indices in
    that row)`, the same result as `top_k` of the `[groups, members * width]` transpose,
    computed without transposing the whole of `values_vr`: blocks are runs of
    `block_size` entries of one member, so their maxima come from an in-order reduce over
    `width`; only the block maxima and the k selected blocks are moved. Blocks are
    ordered as in the row, so ties resolve to the lower index here too.

    Example:
    >>> scores_rw = tf.random.normal([6, 8192])  # 2 groups x 3 members, width 8192
    >>> best, where = top_k_vocab_major(tf.transpose(scores_rw), 3, 5)
    >>> expected = tf.math.top_k(tf.reshape(scores_rw, [2, 3 * 8192]), 5)
    >>> bool(tf.reduce_all(where == expected.indices))
    True
    """
    width = values_vr.shape[0]
    block_size = None if width is None else block_size_for(width)
    if block_size is None or width % block_size or width < 16 * block_size or k > width // block_size:
        # Short or odd widths: the transposed row is small, or has no whole blocks.
        return top_k(tf.reshape(tf.transpose(values_vr), [-1, members * tf.shape(values_vr)[0]]), k)
    blocks_bsr = _blocks_of_columns(values_vr, block_size)
    block_max_br = tf.reduce_max(blocks_bsr, axis=1)
    best_values, indices, _ = _top_k_in_best_blocks(blocks_bsr, block_max_br, members, k, k)
    return best_values, indices


def vocab_major_block_size(width, k):
    """The block size `top_k_vocab_major_within_bounds` cuts a vocabulary of `width` into:
    whole blocks only (the `[width, rows]` values then reshape for free), at least 16 of
    them and at least `k`. That is `block_size_for(width)` where it qualifies, else the
    qualifying divisor of `width` in `[2, 512]` nearest 256 (small vocabularies take small
    blocks), else None.

    Example:
    >>> [vocab_major_block_size(width, 4) for width in (250112, 128112, 3000, 64, 100003)]
    [256, 272, 150, 4, None]
    """
    if width is None:
        return None

    def qualifies(size):
        return width % size == 0 and width // size >= max(16, k)

    size = block_size_for(width)
    if qualifies(size):
        return size
    divisors = [size for size in range(2, 513) if qualifies(size)]
    if not divisors:
        return None
    return min(divisors, key=lambda size: (abs(size - DEFAULT_BLOCK_SIZE), size))


def block_maxima_vocab_major(values_vr, k):
    """`[blocks, rows]` maxima of the `vocab_major_block_size` blocks of each column of
    `values_vr` `[width, rows]`, or None when the width does not block (see there)."""
    width = values_vr.shape[0]
    block_size = vocab_major_block_size(width, k)
    if block_size is None:
        return None
    blocks_bsr = _blocks_of_columns(values_vr, block_size)
    return tf.reduce_max(blocks_bsr, axis=1)


def top_k_vocab_major_within_bounds(values_vr, block_upper_br, members, k, blocks_to_read):
    """`top_k_vocab_major` that reads only some blocks of `values_vr`, given bounds.

    `block_upper_br` `[blocks, rows]` bounds from above the maximum of each
    `vocab_major_block_size(width, k)` block of each column (`block_maxima_vocab_major`
    of values at least as large). Only the `blocks_to_read` blocks of each group with the
    highest bounds are read: when `values_vr` is an expression (log-probabilities,
    processed), XLA computes it for those blocks only, instead of a pass over the whole.

    Returns `(top values [groups, k], their indices, exact)`. `exact` (bool scalar) holds
    when every group's k-th value is above the bound of every block left unread: no entry
    there can be in the top k, and the result is `top_k_vocab_major`'s, ties included
    (blocks are read in index order). Otherwise the caller must compute it in full.

    Example:
    >>> scores_rw = tf.random.normal([6, 8192])  # 2 groups x 3 members, width 8192
    >>> upper = tf.reduce_max(tf.reshape(tf.transpose(scores_rw), [32, 256, 6]), axis=1)
    >>> best, where, exact = top_k_vocab_major_within_bounds(
    ...     tf.transpose(scores_rw), upper + 1e-3, 3, 2, 4)
    >>> expected = tf.math.top_k(tf.reshape(scores_rw, [2, 3 * 8192]), 2)
    >>> bool(exact), bool(tf.reduce_all(where == expected.indices))
    (True, True)
    """
    width = values_vr.shape[0]
    block_size = vocab_major_block_size(width, k)
    if block_size is None:
        raise ValueError(f"a vocabulary of {width} does not cut into blocks for a top {k}")
    blocks_bsr = _blocks_of_columns(values_vr, block_size)
    best_values, indices, best_unread = _top_k_in_best_blocks(
        blocks_bsr, block_upper_br, members, k, max(k, blocks_to_read), report_unread=True)
    # The k-th value as a minimum, not a slice: XLA turns a sort whose outputs are read only
    # through leading slices into its fast top-k, and would merge a slice here into that.
    exact = tf.reduce_all(tf.reduce_min(best_values, axis=1) > best_unread)
    return best_values, indices, exact


def _blocks_of_columns(values_vr, block_size):
    """`[width, rows]` values as `[width / block_size, block_size, rows]` (a free reshape)."""
    return tf.reshape(values_vr, [values_vr.shape[0] // block_size, block_size, tf.shape(values_vr)[1]])


def _top_k_in_best_blocks(blocks_bsr, block_key_br, members, k, blocks_to_read,
                          report_unread=False):
    """The top k of each group's row among the entries of its `blocks_to_read` blocks with
    the highest `block_key_br` (ties to the lower block), and the best key left unread
    (`[groups]`, -inf when every block was read; None unless `report_unread`).

    `blocks_bsr` is `[blocks, block_size, rows]`, the columns' runs of entries; group
    `g`'s row is its `members` columns end to end, block `m * blocks + b` of that row
    being `blocks_bsr[b, :, g * members + m]`."""
    blocks_per_member, block_size = blocks_bsr.shape[0], blocks_bsr.shape[1]
    rows = tf.shape(blocks_bsr)[2]
    # [groups, members * blocks]: block `m * blocks_per_member + b` of a group's row.
    key_gn = tf.reshape(tf.transpose(block_key_br), [-1, members * blocks_per_member])
    total_blocks = members * blocks_per_member
    to_read = min(blocks_to_read, total_blocks)
    chosen_blocks = tf.math.top_k(key_gn, k=to_read).indices  # [groups, to_read]
    best_unread = None
    if report_unread:
        # A mask, not the (to_read + 1)-th value of the top-k: see the caller.
        is_read_gn = tf.reduce_any(
            tf.equal(tf.range(total_blocks)[tf.newaxis, tf.newaxis, :], chosen_blocks[:, :, tf.newaxis]),
            axis=1)
        best_unread = tf.reduce_max(tf.where(is_read_gn, float("-inf"), key_gn), axis=1)
    best_blocks = tf.sort(chosen_blocks, axis=-1)
    first_column = tf.range(rows // members, dtype=tf.int32)[:, tf.newaxis] * members
    column = best_blocks // blocks_per_member + first_column
    # [blocks, rows, block_size]: XLA gathers the selected runs, not the whole.
    blocks_brs = tf.transpose(blocks_bsr, [0, 2, 1])
    candidates = tf.gather_nd(blocks_brs, tf.stack([best_blocks % blocks_per_member, column], -1))
    best_values, positions = tf.math.top_k(tf.reshape(candidates, [-1, to_read * block_size]), k=k)
    block_of = tf.gather(best_blocks, positions // block_size, batch_dims=1)
    return best_values, block_of * block_size + positions % block_size, best_unread
