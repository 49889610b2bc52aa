"""Next-token score processing, in the reference's order, as stock TensorFlow ops.

Every function takes `scores` `[rows, vocab]` float32 and returns new scores of the same
shape. Sequence-dependent processors read the static-size token buffer
`sequences` `[rows, buffer_len]` int32 of which the first `cur_len` (int32 scalar tensor)
columns are valid: the decoder prompt (at least the start token) followed by what was
generated so far. Nothing here uses Python control flow on tensor values, so the same
code traces into an XLA cluster or a plain graph (and a SavedModel).

`LogitsProcessing` bundles the static choices (which processors run) with the runtime
values (penalties, lengths) and applies the chain in the reference's order:
repetition penalty, no-repeat n-gram, minimum length, forced BOS, forced EOS, and for
sampling temperature, top-k, top-p.
"""

import dataclasses
from typing import Optional, Tuple

import tensorflow as tf

from tfmodels.generation.top_k import top_k as exact_top_k
from tfmodels.layers.products import in_xla_context

NEG_INF = float("-inf")


def vocab_mask(token_ids, vocab_size):
    """`[vocab]` bool, True at the (static) `token_ids`."""
    mask = tf.zeros([vocab_size], tf.bool)
    if not token_ids:
        return mask
    indices = tf.constant([[int(token)] for token in token_ids], tf.int32)
    return tf.tensor_scatter_nd_update(mask, indices, tf.ones([len(token_ids)], tf.bool))


def valid_positions(buffer_len, cur_len):
    """`[1, buffer_len]` bool: the columns of the token buffer filled so far."""
    return (tf.range(buffer_len, dtype=tf.int32) < cur_len)[tf.newaxis, :]


# ------------------------------------------------------------------------------ processors
def apply_repetition_penalty(scores, sequences, cur_len, penalty):
    """Divides positive (multiplies negative) scores of every token already in the sequence
    by `penalty`, once per token however often it occurs.

    The scores of the buffer's tokens are gathered, penalised and scattered back. Unfilled
    columns are redirected to column 0 (always valid), so every write to a given
    `(row, token)` carries the same value and the scatter is order-independent.
    """
    buffer_len = tf.shape(sequences)[1]
    tokens = tf.where(valid_positions(buffer_len, cur_len), sequences, sequences[:, :1])
    picked = tf.gather(scores, tokens, batch_dims=1)  # [rows, buffer_len]
    penalised = tf.where(picked < 0.0, picked * penalty, picked / penalty)
    rows = tf.broadcast_to(
        tf.range(tf.shape(scores)[0], dtype=tf.int32)[:, tf.newaxis], tf.shape(tokens)
    )
    indices = tf.stack([rows, tokens], axis=-1)  # [rows, buffer_len, 2]
    return tf.tensor_scatter_nd_update(scores, indices, penalised)


def apply_no_repeat_ngram(scores, sequences, cur_len, ngram_size):
    """Bans every token that would complete an n-gram already present in the sequence.

    For each start `i` the window `sequences[:, i : i + n - 1]` is compared with the last
    `n - 1` tokens; on a match (and `i + n <= cur_len`) the token that followed it,
    `sequences[:, i + n - 1]`, gets -inf. A scatter-min with +inf for non-matches leaves
    other scores untouched and does not depend on write order.
    """
    n = int(ngram_size)
    buffer_len = sequences.shape[1]
    if buffer_len is None:
        raise ValueError("no_repeat_ngram_size needs a token buffer of static length")
    num_starts = buffer_len - n + 1
    if num_starts <= 0:
        return scores
    # The last n-1 tokens (the prefix the next token would complete): [rows, n-1].
    if n > 1:
        prefix_positions = cur_len - (n - 1) + tf.range(n - 1, dtype=tf.int32)
        prefix = tf.gather(sequences, tf.maximum(prefix_positions, 0), axis=1)
    matches = tf.ones([tf.shape(sequences)[0], num_starts], tf.bool)
    for offset in range(n - 1):
        window = sequences[:, offset : offset + num_starts]  # [rows, num_starts]
        matches = tf.logical_and(matches, tf.equal(window, prefix[:, offset : offset + 1]))
    starts = tf.range(num_starts, dtype=tf.int32)
    matches = tf.logical_and(matches, (starts + n <= cur_len)[tf.newaxis, :])
    banned_tokens = sequences[:, n - 1 : n - 1 + num_starts]  # [rows, num_starts]
    rows = tf.broadcast_to(
        tf.range(tf.shape(scores)[0], dtype=tf.int32)[:, tf.newaxis], tf.shape(banned_tokens)
    )
    indices = tf.stack([rows, banned_tokens], axis=-1)
    updates = tf.where(matches, tf.constant(NEG_INF, tf.float32), tf.constant(float("inf"), tf.float32))
    return tf.tensor_scatter_nd_min(scores, indices, updates)


def apply_min_length(scores, cur_len, min_length, eos_mask):
    """EOS gets -inf while the sequence (prompt included) is shorter than `min_length`."""
    too_short = cur_len < min_length
    block = tf.logical_and(too_short, eos_mask)[tf.newaxis, :]
    return tf.where(block, tf.constant(NEG_INF, tf.float32), scores)


def apply_forced_token(scores, force, token_ids):
    """Where `force` (`[rows]` bool) is set, every score becomes -inf except `token_ids`
    (`[rows]` int32), which gets 0 — the reference's forced BOS/EOS."""
    vocab_size = tf.shape(scores)[1]
    is_token = tf.equal(tf.range(vocab_size, dtype=tf.int32)[tf.newaxis, :], token_ids[:, tf.newaxis])
    forced = tf.where(is_token, tf.constant(0.0, tf.float32), tf.constant(NEG_INF, tf.float32))
    return tf.where(force[:, tf.newaxis], forced, scores)


def apply_temperature(scores, temperature):
    return scores / temperature


def apply_top_k(scores, top_k):
    """Keeps the `top_k` (static) best scores per row, and ties with the k-th; -inf elsewhere.

    Returns `(scores, best)` where `best` `[rows, k]` are the k best scores, descending
    (top-p reuses them instead of sorting the whole vocabulary).
    """
    k = min(int(top_k), scores.shape[-1] or int(top_k))
    best = exact_top_k(scores, k)[0]
    return tf.where(scores < best[:, -1:], tf.constant(NEG_INF, tf.float32), scores), best


def apply_top_p(scores, top_p, min_tokens_to_keep=1, best=None):
    """Nucleus filtering: drops the least likely tokens whose cumulative probability stays
    at or below `1 - top_p`, keeping at least `min_tokens_to_keep`.

    Sorting ascending and thresholding on the smallest kept score gives the reference's
    set (up to exact ties at the threshold) without scattering a permutation back. After
    top-k filtering only the k survivors (`best`, descending) can be kept, and the
    filtered-out tokens have probability 0, so sorting those k is enough.
    """
    if best is None:
        sorted_ascending = tf.sort(scores, axis=-1, direction="ASCENDING")
    else:
        sorted_ascending = tf.reverse(best, axis=[-1])
    cumulative = tf.cumsum(tf.nn.softmax(sorted_ascending, axis=-1), axis=-1)
    removed = cumulative <= 1.0 - top_p
    width = tf.shape(sorted_ascending)[1]
    keep_tail = tf.range(width, dtype=tf.int32) >= width - min_tokens_to_keep
    removed = tf.logical_and(removed, tf.logical_not(keep_tail)[tf.newaxis, :])
    num_removed = tf.reduce_sum(tf.cast(removed, tf.int32), axis=-1)  # [rows]
    threshold = tf.gather(sorted_ascending, num_removed[:, tf.newaxis], batch_dims=1)
    return tf.where(scores < threshold, tf.constant(NEG_INF, tf.float32), scores)


def _only_when(condition, process, scores):
    """`process(scores)` where the scalar bool `condition` holds, else `scores`.

    In a plain graph a `tf.cond`, so the other steps skip the work. Under XLA a select:
    a conditional there passes the `[rows, vocab]` scores in and out by copy (three
    processors copied 16-32 MB per beam-search step), while a select of elementwise
    processors fuses into the kernels around it at no extra pass.
    """
    if in_xla_context():
        return tf.where(condition, process(scores), scores)
    return tf.cond(condition, lambda: process(scores), lambda: scores)


# ------------------------------------------------------------------------------ the chain
@dataclasses.dataclass(frozen=True)
class ProcessorSpec:
    """The static part of logit processing (hashable, part of the compiled function's
    cache key): which processors exist in the graph. Everything else is a run-time value
    in `ProcessorValues`; processors that act only at some steps (minimum length, forced
    BOS / EOS) are skipped at the other steps (see `_only_when`)."""

    vocab_size: int
    eos_token_ids: Tuple[int, ...] = ()
    use_repetition_penalty: bool = False
    no_repeat_ngram_size: int = 0
    allow_forced_bos: bool = False  # only a one-token prompt has a "first step" to force
    do_sample: bool = False
    use_temperature: bool = False
    top_k: int = 0
    use_top_p: bool = False
    min_tokens_to_keep: int = 1
    suppress_token_ids: Tuple[int, ...] = ()  # never generated (`suppress_tokens`)


@dataclasses.dataclass
class ProcessorValues:
    """Run-time tensors of the processors (int32 / float32 scalars unless noted)."""

    max_length: tf.Tensor
    min_length: tf.Tensor
    repetition_penalty: tf.Tensor
    temperature: tf.Tensor
    top_p: tf.Tensor
    forced_bos_token_id: Optional[tf.Tensor] = None  # [rows] int32, -1 = not forced
    forced_eos_token_id: Optional[tf.Tensor] = None  # scalar int32, -1 = none


class LogitsProcessing:
    """Applies the configured processors to one step's scores.

    Example:
    >>> spec = ProcessorSpec(vocab_size=6, eos_token_ids=(1,))
    >>> values = ProcessorValues(max_length=tf.constant(10), min_length=tf.constant(3),
    ...                          repetition_penalty=tf.constant(1.0),
    ...                          temperature=tf.constant(1.0), top_p=tf.constant(1.0))
    >>> process = LogitsProcessing(spec, values)
    >>> scores = process(tf.zeros([2, 6]), tf.zeros([2, 4], tf.int32), tf.constant(1))
    >>> float(scores[0, 1])
    -inf
    """

    def __init__(self, spec, values):
        self.spec = spec
        self.values = values
        self.eos_mask = vocab_mask(spec.eos_token_ids, spec.vocab_size)
        self.suppress_mask = (vocab_mask(spec.suppress_token_ids, spec.vocab_size)
                              if spec.suppress_token_ids else None)

    @property
    def sets_scores_to_constants_only(self):
        """True when every processor in the chain leaves a score as it is or replaces it
        with a constant (-inf bans, a forced token's 0): no repetition penalty, no sampling
        warpers. Then a score's processed value follows from where the processed chain
        sends any other value of the same token (what `generation.screening` uses)."""
        return not (self.spec.use_repetition_penalty or self.spec.do_sample)

    def only_bans_at(self, cur_len):
        """Bool scalar tensor: at this step every active processor keeps each score or sets
        it to -inf, so no processed score exceeds its unprocessed value. False at a forced
        token's step (the forced token's 0 may be above its log-probability) and for a
        chain that is not `sets_scores_to_constants_only`. Beam search then bounds the
        processed scores by the unprocessed ones (`search.beam_search`)."""
        if not self.sets_scores_to_constants_only:
            return tf.constant(False)
        forcing = [step for step in (self._forces_bos_at(cur_len), self._forces_eos_at(cur_len))
                   if step is not None]
        if not forcing:
            return tf.constant(True)
        return tf.logical_not(tf.reduce_any(tf.stack(forcing)))

    def _forces_bos_at(self, cur_len):
        """Bool scalar: the forced-BOS processor acts at this step; None when the chain has
        none (decided while tracing)."""
        forced_ids = self.values.forced_bos_token_id
        if not self.spec.allow_forced_bos or forced_ids is None:
            return None
        return tf.logical_and(tf.equal(cur_len, 1), tf.reduce_any(forced_ids >= 0))

    def _forces_eos_at(self, cur_len):
        """Bool scalar: the forced-EOS processor acts at this step; None when the chain has
        none."""
        eos_id = self.values.forced_eos_token_id
        if eos_id is None:
            return None
        return tf.logical_and(tf.equal(cur_len, self.values.max_length - 1), eos_id >= 0)

    def __call__(self, scores, sequences, cur_len):
        spec, values = self.spec, self.values
        if spec.use_repetition_penalty:
            scores = apply_repetition_penalty(scores, sequences, cur_len, values.repetition_penalty)
        if spec.no_repeat_ngram_size > 0:
            scores = apply_no_repeat_ngram(scores, sequences, cur_len, spec.no_repeat_ngram_size)
        if spec.eos_token_ids:
            scores = _only_when(
                cur_len < values.min_length,
                lambda scores: apply_min_length(scores, cur_len, values.min_length, self.eos_mask),
                scores,
            )
        forces_bos = self._forces_bos_at(cur_len)
        if forces_bos is not None:
            forced_ids = values.forced_bos_token_id
            scores = _only_when(
                forces_bos,
                lambda scores: apply_forced_token(scores, forced_ids >= 0, forced_ids),
                scores,
            )
        forces_eos = self._forces_eos_at(cur_len)
        if forces_eos is not None:
            eos_id = values.forced_eos_token_id
            rows = tf.shape(scores)[0]
            scores = _only_when(
                forces_eos,
                lambda scores: apply_forced_token(
                    scores, tf.ones([rows], tf.bool), tf.fill([rows], eos_id)
                ),
                scores,
            )
        if self.suppress_mask is not None:
            # After the forced tokens, before the sampling warpers (the reference's order).
            scores = tf.where(self.suppress_mask, tf.constant(float("-inf"), scores.dtype), scores)
        if spec.do_sample:
            if spec.use_temperature:
                scores = apply_temperature(scores, values.temperature)
            best = None
            if spec.top_k > 0:
                scores, best = apply_top_k(scores, max(spec.top_k, spec.min_tokens_to_keep))
            if spec.use_top_p:
                scores = apply_top_p(scores, values.top_p, spec.min_tokens_to_keep, best)
        return scores
