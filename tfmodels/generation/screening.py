"""Greedy token choice through an int8-screened LM head, with the float head's answer.

A greedy step needs one thing from the LM head: the argmax of the processed logits. With
a `ScreenedHead` (`model.enable_head_screening()`), a step

1. bounds every logit from the int8 copy of the head (`lower <= logit <= upper`, a
   quarter of the head's bytes read), and applies the logit processors to both bounds
   (every greedy processor maps each token's score on its own, by a non-decreasing
   function: bans, forced tokens, the repetition penalty), which keeps them bounds;
2. keeps the `k` (`screen.candidates`) tokens with the highest upper bounds, and checks
   that the next one's upper bound is below the best lower bound: then no other token
   can win;
3. scores those `k` tokens with the float head rows (a gather of `k` rows per input row),
   processes them and takes the argmax, ties to the lowest id as `tf.argmax` does.

When the check of step 2 fails for any row, that step takes the plain float head instead
(`fallback_fn`), so the tokens are always the float head's. Trained heads, whose logits
are far more peaked than random ones, should leave the check a wider margin than the
random-weight models it was measured on (`screened_head.DEFAULT_CANDIDATES`).
"""

import tensorflow as tf

from tfmodels.generation.top_k import top_k_vocab_major
from tfmodels.layers.products import optimization_barrier


def screened_greedy_tokens(screen, hidden_ri, head_oi, process_vr=None, fallback_fn=None,
                           process_sets_constants_only=False):
    """The greedy tokens `argmax(process(hidden @ head^T))` per row, through `screen`.

    Args:
        screen: a `ScreenedHead` assigned from `head_oi`'s current values.
        hidden_ri: `[rows, in]` float32 inputs of the head.
        head_oi: `[vocab, in]` float32 head matrix.
        process_vr: None, or the logit processors as a function of `[vocab, rows]`
            scores (per token and non-decreasing in each score, as every greedy
            processor is).
        fallback_fn: None, or a zero-argument function returning the tokens `[rows]`
            int32 from the plain head, taken (`tf.cond`) when the screen cannot decide.
        process_sets_constants_only: `process_vr` only keeps scores or replaces them with
            constants (`LogitsProcessing.sets_scores_to_constants_only`): the candidates'
            processed scores are then read off the processed bounds instead of processing
            a vocabulary-sized grid of them.

    Returns:
        `(tokens [rows] int32, screened)`, `screened` a bool scalar: whether the screen
        decided (False: the tokens are `fallback_fn`'s, or undecided without one).

    Example:
    >>> from tfmodels.layers.screened_head import ScreenedHead
    >>> head = tf.random.normal([5000, 32])
    >>> screen = ScreenedHead(5000, 32)
    >>> screen.assign(head)
    >>> hidden = tf.random.normal([3, 32])
    >>> tokens, screened = screened_greedy_tokens(screen, hidden, head)
    >>> expected = tf.argmax(hidden @ tf.transpose(head), axis=1, output_type=tf.int32)
    >>> bool(screened), tokens.numpy().tolist() == expected.numpy().tolist()
    (True, True)
    """
    hidden_ri = tf.convert_to_tensor(hidden_ri, tf.float32)
    raw_lower_vr, raw_upper_vr = screen.logit_bounds_vocab_major(hidden_ri)
    lower_vr, upper_vr = raw_lower_vr, raw_upper_vr
    if process_vr is not None:
        lower_vr, upper_vr = process_vr(raw_lower_vr), process_vr(raw_upper_vr)
    vocab = screen.vocab_size
    k = max(1, min(screen.candidates, vocab - 1))
    best_lower_r = tf.reduce_max(lower_vr, axis=0)
    upper_rk, token_ids_rk = top_k_vocab_major(upper_vr, 1, k + 1)  # [rows, k + 1]
    # Without the barrier XLA fuses the best-lower-bound reduction into the comparison
    # with the candidates' bounds, and the screen of 8 rows by mt5-small's head takes
    # 44-55 instead of 20 ms (2 threads).
    best_lower_r, upper_rk = optimization_barrier(best_lower_r, upper_rk)
    # Every token outside the first k has an upper bound at most the (k+1)-th one's.
    screened = tf.reduce_all(upper_rk[:, k] < best_lower_r)
    token_ids_rk = token_ids_rk[:, :k]
    rows_head_rki = tf.gather(tf.convert_to_tensor(head_oi, tf.float32), token_ids_rk)
    exact_rk = tf.einsum("ri,rki->rk", hidden_ri, rows_head_rki)
    rows = tf.shape(hidden_ri)[0]
    row_ids_rk = tf.broadcast_to(tf.range(rows)[:, tf.newaxis], tf.shape(token_ids_rk))
    positions_rk2 = tf.stack([token_ids_rk, row_ids_rk], axis=-1)  # into [vocab, rows]
    if process_vr is not None and process_sets_constants_only:
        # A token whose two bounds the chain kept is kept (a processor that keeps two of
        # its scores keeps them all); any other got a constant, its processed bound.
        def at_candidates(values_vr):
            return tf.gather_nd(values_vr, positions_rk2)

        kept_rk = tf.logical_and(
            tf.equal(at_candidates(lower_vr), at_candidates(raw_lower_vr)),
            tf.equal(at_candidates(upper_vr), at_candidates(raw_upper_vr)),
        )
        exact_rk = tf.where(kept_rk, exact_rk, at_candidates(upper_vr))
        process_vr = None
    if process_vr is None:
        best_r1 = tf.reduce_max(exact_rk, axis=1, keepdims=True)
        tokens = tf.reduce_min(tf.where(exact_rk == best_r1, token_ids_rk, vocab), axis=1)
    else:
        # The processors need token positions: the candidates' scores in a -inf
        # vocabulary-major grid (processing a -inf score leaves it -inf).
        scores_vr = tf.tensor_scatter_nd_update(
            tf.fill([vocab, rows], tf.constant(float("-inf"), tf.float32)), positions_rk2, exact_rk)
        tokens = tf.argmax(process_vr(scores_vr), axis=0, output_type=tf.int32)
    if fallback_fn is not None:
        tokens = tf.cond(screened, lambda: tokens, fallback_fn)
    return tokens, screened
