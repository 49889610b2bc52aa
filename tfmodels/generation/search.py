"""The decoding loops: greedy / multinomial sampling, and beam search (optionally sampled).

Both are single `tf.while_loop`s over static-size state, so they compile into one XLA
cluster and also run (and export) as a plain graph. They know nothing about the model:
the caller passes

- `step_fn(token_ids [rows, 1] int32, cache, cache_index int32 scalar)`
  -> `(logits [rows, vocab] float32, cache)`: one decoder step against the KV cache
  (`[vocab, rows]` when the search is called with `vocab_major=True`: where the LM head's
  product comes out that way, the searches work on it as it is, see `vocab_major`);
- `reorder_fn(cache, row_indices [rows] int32) -> cache` (beam search only): selects the
  cache rows the surviving beams continue from.

Token buffers are `[rows, buffer_len]` int32: the decoder prompt in the first
`prompt_length` columns (static), filled with generated tokens as the loop goes. The loop
stops as soon as every active row is done (or `max_length`, an int32 scalar tensor, is
reached). The semantics (which token ends up where, how beams are scored and retired,
when the loop stops) are those of the reference's `_sample` and `_beam_search`.
"""

import tensorflow as tf

from tfmodels.generation import random as gen_random
from tfmodels.generation.top_k import (
    block_maxima_vocab_major,
    top_k,
    top_k_vocab_major,
    top_k_vocab_major_within_bounds,
)
from tfmodels.layers.products import in_xla_context, optimization_barrier

# The reference's "impossible" score offset for beams that must not be selected.
LARGE_NEGATIVE = -1.0e9


def _write_column(buffer, column, values):
    """`buffer[..., column] = values` for a `[..., buffer_len]` int32 buffer."""
    buffer_len = tf.shape(buffer)[-1]
    is_column = tf.equal(tf.range(buffer_len, dtype=tf.int32), column)
    return tf.where(is_column, values[..., tf.newaxis], buffer)


def _keep_static_shapes(new_values, old_values):
    """Loop outputs keep the static shapes of the loop inputs (ops such as reshapes with
    dynamic sizes lose a known batch dimension, which tf.while_loop rejects)."""
    for new, old in zip(tf.nest.flatten(new_values), tf.nest.flatten(old_values)):
        new.set_shape(old.shape)
    return new_values


def exp_sum_vocab_major(shifted_vr):
    """`reduce_sum(exp(shifted_vr), axis=0, keepdims=True)` of `[vocab, rows]` values.

    Under XLA the exponentials are multiplied by a one that XLA cannot fold away (through
    an optimisation barrier; the product changes no bit of them). XLA:CPU (TensorFlow
    2.21) hands a large sum whose operand is an `exp` to its YNNPACK reduction; the sum of
    a product stays with XLA's own reduction, which splits it over the threads. mT5's
    `[250112, 32]` at 8 x 4 beams, profiled in the decoding loop on 2 threads of an Intel
    Xeon: 4.6 instead of 8.4 ms per step for the exponentials and their sum; 8 x 4 beam
    search 97-98 -> 100-103 tokens/s (alternating runs of the two versions).

    Example:
    >>> exp_sum_vocab_major(tf.zeros([5, 2])).numpy()
    array([[5., 5.]], dtype=float32)
    """
    exps_vr = tf.exp(shifted_vr)
    if in_xla_context():
        one_1r = optimization_barrier(tf.ones_like(shifted_vr[:1]))[0]
        exps_vr = exps_vr * one_1r
    return tf.reduce_sum(exps_vr, axis=0, keepdims=True)


def log_softmax_vocab_major(logits_vr):
    """`tf.nn.log_softmax` over the vocabulary of `[vocab, rows]` logits (the same
    max-shifted form), reducing over the leading axis in memory order."""
    shifted_vr = logits_vr - tf.reduce_max(logits_vr, axis=0, keepdims=True)
    return shifted_vr - tf.math.log(exp_sum_vocab_major(shifted_vr))


def process_vocab_major(process_fn, scores_vr, sequences, cur_len):
    """`process_fn` (written for `[rows, vocab]`) applied to `[vocab, rows]` scores.

    The processors are masks and selects, so XLA fuses them between the two transposes
    into one in-order pass, and the transposes cancel; with no processor active nothing
    is computed at all.
    """
    return tf.transpose(process_fn(tf.transpose(scores_vr), sequences, cur_len))


def processed_argmax(logits, process_fn, sequences, cur_len, vocab_major=False, noise=None):
    """`argmax(process_fn(logits) + noise)` over the vocabulary: `[rows]` int32 tokens from
    `[rows, vocab]` logits (`[vocab, rows]` when `vocab_major`; `noise` in the same layout)."""
    if vocab_major:
        scores = process_vocab_major(process_fn, logits, sequences, cur_len)
    else:
        scores = process_fn(logits, sequences, cur_len)
    if noise is not None:
        scores = scores + noise
    return tf.argmax(scores, axis=0 if vocab_major else 1, output_type=tf.int32)


def _is_eos(token_ids, eos_token_ids):
    hit = tf.zeros_like(token_ids, dtype=tf.bool)
    for eos in eos_token_ids:
        hit = tf.logical_or(hit, tf.equal(token_ids, eos))
    return hit


# ------------------------------------------------------------------------ greedy / sample
def greedy_search(
    step_fn,
    cache,
    sequences,
    prompt_length,
    max_length,
    process_fn,
    is_active,
    eos_token_ids,
    pad_token_id,
    do_sample=False,
    random_key=None,
    vocab_major=False,
    select_fn=None,
):
    """Greedy decoding, or multinomial sampling when `do_sample` (Gumbel-max with the
    counter-based noise of `generation.random`, keyed by `random_key`).

    Args:
        sequences: `[rows, buffer_len]` int32, the prompt in the first `prompt_length`
            columns and `pad_token_id` after it.
        process_fn: `(scores [rows, vocab], sequences, cur_len) -> scores`.
        is_active: `[rows]` bool; inactive rows (batch padding) count as finished from
            the start and never keep the loop alive.
        vocab_major: `step_fn` returns `[vocab, rows]` logits (static).
        select_fn: None, or `(step_output, sequences, cur_len) -> next tokens [rows]`
            int32 in place of processing and argmax (greedy only): `step_fn` then returns
            whatever `select_fn` takes in place of logits (the screened head's inputs,
            `generation.screening`).

    Returns:
        `(sequences [rows, buffer_len], lengths [rows])`; `lengths` is each row's length
        up to and including its EOS (or the final length if it never finished). As in
        the reference, a finished row gets `pad_token_id` until the loop ends.
    """
    rows = tf.shape(sequences)[0]
    vocab_axis = 0 if vocab_major else 1
    use_eos = bool(eos_token_ids)
    cur_len = tf.constant(prompt_length, tf.int32)
    last_tokens = sequences[:, prompt_length - 1]
    lengths = tf.fill([rows], cur_len)
    unfinished = tf.identity(is_active)

    def condition(cur_len, sequences, cache, unfinished, last_tokens, lengths):
        return tf.logical_and(cur_len < max_length, tf.reduce_any(unfinished))

    def body(*loop_vars):
        return _keep_static_shapes(greedy_step(*loop_vars), loop_vars)

    def greedy_step(cur_len, sequences, cache, unfinished, last_tokens, lengths):
        step_output, cache = step_fn(last_tokens[:, tf.newaxis], cache, cur_len - 1)
        if select_fn is not None:
            next_tokens = select_fn(step_output, sequences, cur_len)
        else:
            noise = None
            if do_sample:
                noise_rv = gen_random.gumbel(random_key, cur_len, rows,
                                             tf.shape(step_output)[vocab_axis])
                noise = tf.transpose(noise_rv) if vocab_major else noise_rv
            next_tokens = processed_argmax(step_output, process_fn, sequences, cur_len,
                                           vocab_major, noise)
        if use_eos:
            next_tokens = tf.where(unfinished, next_tokens, tf.constant(pad_token_id, tf.int32))
        sequences = _write_column(sequences, cur_len, next_tokens)
        new_len = cur_len + 1
        lengths = tf.where(unfinished, new_len, lengths)
        if use_eos:
            unfinished = tf.logical_and(unfinished, tf.logical_not(_is_eos(next_tokens, eos_token_ids)))
        return new_len, sequences, cache, unfinished, next_tokens, lengths

    buffer_len = sequences.shape[1]
    _, sequences, _, _, _, lengths = tf.while_loop(
        condition,
        body,
        (cur_len, sequences, cache, unfinished, last_tokens, lengths),
        maximum_iterations=None if buffer_len is None else buffer_len - prompt_length,
    )
    return sequences, lengths


# ---------------------------------------------------------------------------- beam search
def beam_search(
    step_fn,
    reorder_fn,
    cache,
    sequences,
    prompt_length,
    max_length,
    process_fn,
    is_active,
    num_beams,
    vocab_size,
    eos_token_ids,
    length_penalty_table,
    early_stop_when_full,
    heuristic_uses_max_length,
    do_sample=False,
    random_key=None,
    vocab_major=False,
):
    """Beam search (beam sampling when `do_sample`) with the reference's scoring.

    Each step keeps the `beams_to_keep = max(2, 1 + len(eos)) * num_beams` best
    continuations over all beams of an example; the best `num_beams` of them that did not
    just end continue, and those among the first `num_beams` that ended (EOS or the
    length limit) compete, scored `sum_logprobs / generated_len ** length_penalty`, for
    the `num_beams` finished slots. With `early_stop_when_full` (the reference's
    `early_stopping=True`) an example stops once it has `num_beams` finished
    hypotheses; otherwise it stops when no running beam can beat the worst finished one
    by the reference's heuristic (`early_stopping=False` / `"never"`).

    Args:
        sequences: `[batch * num_beams, buffer_len]` int32: prompt, then the fill value.
        is_active: `[batch]` bool; inactive examples are done from the start.
        length_penalty_table: `[buffer_len + 1]` float32, `n ** length_penalty` at n.
        early_stop_when_full: bool scalar tensor.
        heuristic_uses_max_length: bool scalar tensor, the reference's
            `early_stopping == "never" and length_penalty > 0` case.
        vocab_major: `step_fn` returns `[vocab, rows]` logits (static); the candidates
            are then scored and selected in that layout (`top_k_vocab_major`).

    Returns:
        `(sequences [batch * num_beams, buffer_len], scores [batch * num_beams],
          lengths [batch * num_beams])`: every example's finished hypotheses, best first.
    """
    beams_to_keep = max(2, 1 + len(eos_token_ids)) * num_beams
    rows = tf.shape(sequences)[0]
    batch = rows // num_beams
    buffer_len = sequences.shape[1]
    if buffer_len is None:
        raise ValueError("beam_search needs a token buffer of static length")

    running = tf.reshape(sequences, [batch, num_beams, buffer_len])
    first_beam_only = tf.concat(
        [tf.zeros([1], tf.float32), tf.fill([num_beams - 1], tf.constant(LARGE_NEGATIVE, tf.float32))],
        axis=0,
    )
    running_scores = tf.tile(first_beam_only[tf.newaxis, :], [batch, 1])  # [batch, beams]
    finished = tf.identity(running)
    finished_scores = tf.fill([batch, num_beams], tf.constant(LARGE_NEGATIVE, tf.float32))
    finished_lengths = tf.fill([batch, num_beams], tf.constant(prompt_length, tf.int32))
    is_finished = tf.zeros([batch, num_beams], tf.bool)
    improvable = tf.identity(is_active)  # the reference's "early-stop heuristic unsatisfied"
    all_candidates_ended = tf.constant(False)
    cur_len = tf.constant(prompt_length, tf.int32)
    last_tokens = sequences[:, prompt_length - 1]
    is_top_slot = tf.range(beams_to_keep, dtype=tf.int32) < num_beams  # [beams_to_keep]
    beam_offsets = tf.range(batch, dtype=tf.int32)[:, tf.newaxis] * num_beams
    inactive = tf.logical_not(is_active)[:, tf.newaxis]  # [batch, 1]

    def condition(cur_len, running, running_scores, finished, finished_scores,
                  finished_lengths, is_finished, improvable, all_candidates_ended,
                  last_tokens, cache):
        everyone_full = tf.reduce_all(tf.logical_or(is_finished, inactive))
        return tf.logical_and(
            tf.logical_and(tf.reduce_any(improvable), tf.logical_not(all_candidates_ended)),
            tf.logical_not(tf.logical_and(everyone_full, early_stop_when_full)),
        )

    def body(*loop_vars):
        return _keep_static_shapes(beam_step(*loop_vars), loop_vars)

    def best_candidates(logits, running, running_scores, cur_len):
        log_probs = tf.nn.log_softmax(logits, axis=-1)
        log_probs = process_fn(log_probs, tf.reshape(running, [rows, buffer_len]), cur_len)
        log_probs = tf.reshape(log_probs, [batch, num_beams, vocab_size])
        accumulated = log_probs + running_scores[:, :, tf.newaxis]
        accumulated = tf.reshape(accumulated, [batch, num_beams * vocab_size])
        # The best (or sampled) `beams_to_keep` continuations per example.
        if not do_sample:
            return top_k(accumulated, beams_to_keep)
        noise = gen_random.gumbel(random_key, cur_len, batch, num_beams * vocab_size)
        top_indices = top_k(accumulated + noise, beams_to_keep)[1]
        return tf.gather(accumulated, top_indices, batch_dims=1), top_indices

    def best_candidates_vocab_major(logits_vr, running, running_scores, cur_len):
        """`best_candidates` for `[vocab, rows]` logits: the same scores and indices."""
        sequences = tf.reshape(running, [rows, buffer_len])
        if not do_sample and getattr(process_fn, "sets_scores_to_constants_only", False):
            raw_max_br = block_maxima_vocab_major(logits_vr, beams_to_keep)
            if raw_max_br is not None:
                return best_candidates_from_block_bounds(
                    logits_vr, raw_max_br, sequences, running_scores, cur_len)
        log_probs_vr = process_vocab_major(
            process_fn, log_softmax_vocab_major(logits_vr), sequences, cur_len)
        accumulated_vr = log_probs_vr + tf.reshape(running_scores, [rows])[tf.newaxis, :]
        if not do_sample:
            return top_k_vocab_major(accumulated_vr, num_beams, beams_to_keep)
        noise = gen_random.gumbel(random_key, cur_len, batch, num_beams * vocab_size)
        noise_vr = tf.reshape(
            tf.transpose(tf.reshape(noise, [batch, num_beams, vocab_size]), [2, 0, 1]),
            [vocab_size, rows],
        )
        top_indices = top_k_vocab_major(accumulated_vr + noise_vr, num_beams, beams_to_keep)[1]
        top_columns = top_indices // vocab_size + beam_offsets
        top_scores = tf.gather_nd(accumulated_vr, tf.stack([top_indices % vocab_size, top_columns], -1))
        return top_scores, top_indices

    def best_candidates_from_block_bounds(logits_vr, raw_max_br, sequences, running_scores,
                                          cur_len):
        """`best_candidates_vocab_major` without a pass over the processed scores.

        The log-softmax shifts each column by a constant, so a block's largest
        accumulated score, unprocessed, is that of its largest logit (the same float ops
        on it: they are non-decreasing). At a step where the processors only ban
        (`only_bans_at`), that bounds the block's processed scores too. The candidates
        are then read from the blocks with the highest bounds, twice as many as the
        beams kept; when their `beams_to_keep`-th score beats every other block's bound
        (nearly always), they are the answer. Otherwise (a forced token, a banned block
        leader, ties) the step scores every candidate as `top_k_vocab_major` does: the
        same scores and indices either way.
        """
        # The log-softmax's max, from the blocks (the barrier keeps XLA from merging the two
        # reductions back into a pass over the logits).
        max_r = tf.reduce_max(optimization_barrier(raw_max_br)[0], axis=0)
        log_sum_r = tf.math.log(exp_sum_vocab_major(logits_vr - max_r)[0])
        scores_r = tf.reshape(running_scores, [rows])

        def accumulated_vr():
            # log_softmax_vocab_major's ops, then the processors and the beam score; built
            # where it is read, so XLA computes it for the entries read only.
            log_probs_vr = (logits_vr - max_r) - log_sum_r
            return process_vocab_major(process_fn, log_probs_vr, sequences, cur_len) + scores_r

        block_upper_br = ((raw_max_br - max_r) - log_sum_r) + scores_r
        top_scores, top_indices, exact = top_k_vocab_major_within_bounds(
            accumulated_vr(), block_upper_br, num_beams, beams_to_keep, 2 * beams_to_keep)
        return tf.cond(
            tf.logical_and(exact, process_fn.only_bans_at(cur_len)),
            lambda: (top_scores, top_indices),
            lambda: top_k_vocab_major(accumulated_vr(), num_beams, beams_to_keep),
        )

    def beam_step(cur_len, running, running_scores, finished, finished_scores,
                  finished_lengths, is_finished, improvable, all_candidates_ended,
                  last_tokens, cache):
        # a-b. Log-probabilities of every continuation, processed, added to the beam
        # scores; the best (or sampled) `beams_to_keep` of each example's candidates,
        # indexed `beam * vocab + token`.
        logits, cache = step_fn(last_tokens[:, tf.newaxis], cache, cur_len - 1)
        if vocab_major:
            top_scores, top_indices = best_candidates_vocab_major(logits, running, running_scores, cur_len)
        else:
            top_scores, top_indices = best_candidates(logits, running, running_scores, cur_len)
        top_beams = top_indices // vocab_size  # [batch, beams_to_keep]
        top_tokens = top_indices % vocab_size
        top_sequences = tf.gather(running, top_beams, batch_dims=1)
        top_sequences = _write_column(top_sequences, cur_len, top_tokens)
        ended = tf.logical_or(_is_eos(top_tokens, eos_token_ids), cur_len + 1 >= max_length)

        # c. Beams that continue: the best `num_beams` candidates that did not end.
        continuing_scores = top_scores + tf.cast(ended, tf.float32) * LARGE_NEGATIVE
        keep = tf.math.top_k(continuing_scores, k=num_beams).indices  # [batch, beams]
        running = tf.gather(top_sequences, keep, batch_dims=1)
        running_scores = tf.gather(continuing_scores, keep, batch_dims=1)
        parent_beams = tf.gather(top_beams, keep, batch_dims=1)
        next_tokens = tf.gather(top_tokens, keep, batch_dims=1)

        # d. Finished hypotheses: merge the candidates that just ended with the kept ones.
        just_finished = tf.logical_and(ended, is_top_slot[tf.newaxis, :])
        candidate_scores = top_scores / tf.gather(length_penalty_table, cur_len + 1 - prompt_length)
        full = tf.logical_and(tf.reduce_all(is_finished, axis=1, keepdims=True), early_stop_when_full)
        candidate_scores += tf.cast(full, tf.float32) * LARGE_NEGATIVE
        candidate_scores += tf.cast(tf.logical_not(improvable)[:, tf.newaxis], tf.float32) * LARGE_NEGATIVE
        candidate_scores += tf.cast(tf.logical_not(just_finished), tf.float32) * LARGE_NEGATIVE
        merged_scores = tf.concat([finished_scores, candidate_scores], axis=1)
        best = tf.math.top_k(merged_scores, k=num_beams).indices
        finished = tf.gather(tf.concat([finished, top_sequences], axis=1), best, batch_dims=1)
        finished_scores = tf.gather(merged_scores, best, batch_dims=1)
        candidate_lengths = tf.fill(tf.shape(top_tokens), cur_len + 1)
        finished_lengths = tf.gather(
            tf.concat([finished_lengths, candidate_lengths], axis=1), best, batch_dims=1
        )
        is_finished = tf.gather(tf.concat([is_finished, just_finished], axis=1), best, batch_dims=1)

        # e. The cache follows the surviving beams.
        cache = reorder_fn(cache, tf.reshape(parent_beams + beam_offsets, [rows]))
        cur_len = cur_len + 1

        # f. Can a running beam still beat the worst finished one?
        hypothetical = tf.where(
            heuristic_uses_max_length, max_length - prompt_length, cur_len - prompt_length
        )
        best_running = running_scores[:, :1] / tf.gather(length_penalty_table, hypothetical)
        worst_finished = tf.where(
            is_finished,
            tf.reduce_min(finished_scores, axis=1, keepdims=True),
            tf.constant(LARGE_NEGATIVE, tf.float32),
        )
        improvable = tf.logical_and(improvable, tf.reduce_any(best_running > worst_finished, axis=1))
        all_candidates_ended = tf.reduce_all(tf.logical_or(ended, inactive))
        return (cur_len, running, running_scores, finished, finished_scores, finished_lengths,
                is_finished, improvable, all_candidates_ended, tf.reshape(next_tokens, [rows]),
                cache)

    loop_vars = (cur_len, running, running_scores, finished, finished_scores, finished_lengths,
                 is_finished, improvable, all_candidates_ended, last_tokens, cache)
    results = tf.while_loop(
        condition, body, loop_vars, maximum_iterations=buffer_len - prompt_length
    )
    finished, finished_scores, finished_lengths = results[3], results[4], results[5]
    return (
        tf.reshape(finished, [rows, buffer_len]),
        tf.reshape(finished_scores, [rows]),
        tf.reshape(finished_lengths, [rows]),
    )
