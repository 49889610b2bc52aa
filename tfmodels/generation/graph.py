"""The whole generation as one graph: encoder once, cross-attention K/V once, the search loop.

`run_search(model, plan, inputs)` is what the compiled functions of `generate` trace.
`generate_graph(...)` is the same thing for exporters: call it inside your own
`tf.function` (string in, string out, with a tokenizer around it) and save that; it uses
stock TensorFlow ops only, runs with or without XLA, and returns sequences cropped to
the longest row.
"""

import tensorflow as tf

from tfmodels.generation import random as gen_random
from tfmodels.generation import search
from tfmodels.generation.logits_processors import LogitsProcessing, ProcessorValues
from tfmodels.generation.options import (
    NOT_GIVEN,
    make_plan,
    resolve_generation_config,
    resolve_lengths,
    runtime_values,
    special_tokens,
)
from tfmodels.generation.screening import screened_greedy_tokens
from tfmodels.layers.int8_matrix import widened_int8_matrices
from tfmodels.layers.products import (
    in_xla_context,
    output_major_is_native,
    output_major_product,
    rows_times_transposed,
)
from tfmodels.layers.shapes import dimensions

# Names and dtypes of the tensors a compiled search takes (shapes follow the plan).
INPUT_DTYPES = {
    "input_ids": tf.int32,  # [batch, source_length]
    "attention_mask": tf.int32,  # [batch, source_length]
    "is_active": tf.bool,  # [batch]: False for batch padding
    "decoder_prompt": tf.int32,  # [batch, prompt_length], start token first
    "forced_bos_token_id": tf.int32,  # [batch], -1 = none
    "max_length": tf.int32,  # scalar
    "min_length": tf.int32,  # scalar
    "repetition_penalty": tf.float32,  # scalar
    "temperature": tf.float32,  # scalar
    "top_p": tf.float32,  # scalar
    "length_penalty_table": tf.float32,  # [buffer_length + 1]
    "early_stop_when_full": tf.bool,  # scalar
    "heuristic_uses_max_length": tf.bool,  # scalar
    "forced_eos_token_id": tf.int32,  # scalar, -1 = none
    "seed": tf.int32,  # [2]
}


def input_signature(plan):
    """`{name: tf.TensorSpec}` of a compiled search for `plan`."""
    batch, source = plan.batch_size, plan.source_length
    shapes = {
        "input_ids": [batch, source],
        "attention_mask": [batch, source],
        "is_active": [batch],
        "decoder_prompt": [batch, plan.prompt_length],
        "forced_bos_token_id": [batch],
        "length_penalty_table": [plan.buffer_length + 1],
        "seed": [2],
    }
    signature = {
        name: tf.TensorSpec(shapes.get(name, []), dtype, name=name)
        for name, dtype in INPUT_DTYPES.items()
    }
    if plan.output_vocabulary_size:
        signature["output_token_ids"] = tf.TensorSpec(
            [plan.output_vocabulary_size], tf.int32, name="output_token_ids"
        )
    return signature


def lm_head_logits(model, hidden):
    """`[rows, d_model]` decoder outputs -> `[rows, vocab]` float32 logits: the math of
    `model.compute_logits`, arranged for decoding.

    A tied head multiplies by the `[vocab, d_model]` embedding matrix through
    `rows_times_transposed`: without XLA, `(E @ h^T)^T` for several rows (the textbook
    `h @ E^T` makes the plain-graph CPU kernel walk the matrix against its layout, 5x
    slower at 8 rows; for one row both forms give the same bits at the same speed, 14.6-15.0
    ms for m2m100_418M's head on 2 threads); under XLA its panel product for several rows
    (m2m100_418M's head at 8 rows: 25-39 instead of 46 ms) and its row-sliced product for
    one.
    """
    if model.lm_head is not None or model.int8_tied_head is not None:
        return model.compute_logits(hidden)
    hidden = model.tied_head_inputs(hidden)
    embeddings = tf.cast(model.token_embedding.embeddings, hidden.dtype)
    return tf.cast(rows_times_transposed(hidden, embeddings), tf.float32)


def _int8_dynamic_head_matrix(model):
    """The `Int8Matrix` that is the whole LM head when it quantises its inputs (an
    `"int8_dynamic"` model's head without bias, tied or not), else None."""
    if model.lm_head is not None:
        head = model.lm_head
        if head.use_bias or head.weight_quantization != "int8_dynamic":
            return None
        return head.int8_kernel
    matrix = model.int8_tied_head
    return matrix if matrix is not None and matrix.quantize_inputs else None


def lm_head_is_vocab_major(model, num_rows):
    """True when, in the current context, the LM head's product for `num_rows` (static)
    rows comes out `[vocab, rows]` (`products.output_major_is_native`, or an int8 head's
    product of int8 inputs, `Int8Matrix.output_major_product`): the searches then take
    the logits that way (`lm_head_logits_vocab_major`) instead of transposing them: for
    mT5's head at 8 x 4 beams the transposed reads cost two passes of about 20 ms per
    step."""
    matrix = model.float_head_matrix()
    if matrix is not None:
        return output_major_is_native(num_rows, matrix)
    int8_matrix = _int8_dynamic_head_matrix(model)
    return int8_matrix is not None and int8_matrix.output_major_is_native(num_rows)


def lm_head_logits_vocab_major(model, hidden):
    """`[rows, d_model]` decoder outputs -> `[vocab, rows]` float32 logits, for a model
    and row count where `lm_head_is_vocab_major`."""
    hidden = model.tied_head_inputs(hidden)
    int8_matrix = _int8_dynamic_head_matrix(model)
    if int8_matrix is not None:
        return int8_matrix.output_major_product(hidden)
    logits_vr = output_major_product(hidden, tf.cast(model.float_head_matrix(), hidden.dtype))
    return tf.cast(logits_vr, tf.float32)


def screened_head_applies(model, plan):
    """True when this search's greedy tokens come through the model's head screen
    (`model.enable_head_screening()`, `generation.screening`): greedy without sampling
    or an output-vocabulary restriction, under XLA, with the float32 head the screen was
    made from. Elsewhere the plain head is as fast or the screen's answer would not be
    the plain one's (a plain graph runs the screen's int8 product panel by panel, each
    panel a loop iteration)."""
    return (
        getattr(model, "head_screen", None) is not None
        and plan.num_beams == 1
        and not plan.do_sample
        and not plan.output_vocabulary_size
        and in_xla_context()
        and model.compute_dtype == "float32"
        and model.float_head_matrix() is not None
    )


def screened_greedy_select(model, process_fn, rows):
    """`greedy_search`'s `select_fn` for a screened head: from the decoder's last hidden
    states `[rows, d_model]` to the greedy tokens, through the screen, falling back to the
    float head as one plain product. The fallback runs only at steps the screen cannot
    decide, so it takes the form XLA compiles fastest, not the fastest to run (at one row
    the sliced product `lm_head_logits` takes would add 16 compiled kernels)."""
    head_oi = model.float_head_matrix()

    def select(hidden, sequences, cur_len):
        head_inputs = tf.ensure_shape(model.tied_head_inputs(hidden), [rows, None])

        def process_vr(scores_vr):
            return search.process_vocab_major(process_fn, scores_vr, sequences, cur_len)

        def fallback():
            logits = tf.matmul(head_inputs, head_oi, transpose_b=True)
            return search.processed_argmax(logits, process_fn, sequences, cur_len)

        tokens, _ = screened_greedy_tokens(
            model.head_screen, head_inputs, head_oi, process_vr, fallback,
            process_sets_constants_only=process_fn.sets_scores_to_constants_only)
        return tokens

    return select


class RestrictedHead:
    """The opt-in output-vocabulary restriction: logits for `token_ids` (`[allowed]`
    int32, duplicates allowed) only, -inf for every other token.

    The head's rows for those tokens are gathered once per call, before the loop, so a
    step reads `allowed x d_model` instead of `vocab x d_model` weights; the small logits
    are spread back over the full vocabulary (-inf elsewhere) with one gather, so
    processors and searches keep working in token ids. Softmax normalises over the
    allowed tokens.
    """

    def __init__(self, model, token_ids):
        vocab_size = int(model.config.vocab_size)
        int8_head = model.int8_tied_head if model.lm_head is None else model.lm_head.int8_kernel
        self.model = model
        self.prepare_inputs = None
        if int8_head is not None:
            # The same (dequantised) weights the unrestricted int8 head multiplies by,
            # and the same (possibly quantised) inputs.
            self.kernel_da = tf.transpose(int8_head.dequantized_rows(token_ids))
            self.prepare_inputs = int8_head.prepare_inputs
        elif model.lm_head is not None:
            head = model.lm_head
            if head.kernel_layout == "in_out":
                self.kernel_da = tf.gather(head.kernel, token_ids, axis=1)  # [d, allowed]
            else:
                self.kernel_da = tf.transpose(tf.gather(head.kernel, token_ids))
        else:
            self.kernel_da = tf.transpose(tf.gather(model.token_embedding.embeddings, token_ids))
        allowed = tf.shape(token_ids)[0]
        # [vocab]: each token's column among the allowed logits, or `allowed` (an appended
        # -inf column) for tokens outside the set. Duplicate ids share the same logit.
        self.column_of_token = tf.tensor_scatter_nd_update(
            tf.fill([vocab_size], allowed), token_ids[:, tf.newaxis], tf.range(allowed)
        )

    def __call__(self, hidden):
        hidden = self.model.tied_head_inputs(hidden)
        if self.prepare_inputs is not None:
            hidden = tf.cast(self.prepare_inputs(hidden), hidden.dtype)
        logits_ra = tf.cast(tf.matmul(hidden, tf.cast(self.kernel_da, hidden.dtype)), tf.float32)
        logits_ra = tf.pad(logits_ra, [[0, 0], [0, 1]], constant_values=float("-inf"))
        return tf.gather(logits_ra, self.column_of_token, axis=1)  # [rows, vocab]


def _repeat_rows(tensor, times):
    """`tf.repeat(tensor, times, axis=0)` (each row `times` times in a row), written as a
    broadcast and a reshape: about 5 graph ops where `tf.repeat` builds about 34, for each
    of the per-layer self-attention K/V caches a beam or sampling search expands (when the
    cross-attention caches were expanded too, `tf.repeat` made 1,106 of mt5-small's 8x4
    beam-search graph's 2,652 ops)."""
    if times == 1:
        return tensor
    rows, *rest = dimensions(tensor)
    repeated = tf.broadcast_to(tf.expand_dims(tensor, 1), [rows, times, *rest])
    return tf.reshape(repeated, [rows * times, *rest])


def run_search(model, plan, inputs):
    """Encoder + decoding loop for one `SearchPlan` (see `_run_search`).

    Without XLA, a weight-quantised model's int8 matrices are widened to float once per
    call, before the loop (a plain graph pays about a millisecond per inner loop, which
    makes panel-by-panel products per step far slower than float; XLA keeps the panels).
    """
    matrices = [] if in_xla_context() else model.int8_matrices()
    with widened_int8_matrices(matrices, model.compute_dtype):
        return _run_search(model, plan, inputs)


def _run_search(model, plan, inputs):
    """Encoder + decoding loop for one `SearchPlan`; `inputs` as in `INPUT_DTYPES`.

    Returns, with `per_row = num_beams` for beam search (all finished hypotheses, best
    first) and `num_samples` otherwise:
    `{"sequences": [batch * per_row, buffer_length] int32,
      "sequences_scores": [batch * per_row] float32 (beam search; zeros otherwise),
      "lengths": [batch * per_row] int32}` — total lengths, prompt included; batch
    padding rows report `prompt_length`.
    """
    expansion = plan.expansion
    prompt_length = plan.prompt_length
    buffer_length = plan.buffer_length

    # Encoder once per input row. Its projected K/V and mask stay one per input: the
    # cross-attention takes each input's `expansion` beams/samples (consecutive rows) as
    # one group of queries against them (`MultiHeadAttention._attend_grouped`).
    encoder_mask = inputs["attention_mask"]
    encoder_states = model.encode(inputs["input_ids"], encoder_mask)["last_hidden_state"]
    # The buffer's last token is never fed to the decoder: the cache needs one slot less.
    cache = model.init_decoding_cache(encoder_states, buffer_length - 1)
    self_cache = [
        (_repeat_rows(key, expansion), _repeat_rows(value, expansion)) for key, value in cache["self"]
    ]
    cross_cache = cache["cross"]
    is_active_rows = _repeat_rows(inputs["is_active"], expansion)
    prompt = _repeat_rows(inputs["decoder_prompt"], expansion)
    rows = tf.shape(prompt)[0]
    vocab_major = False
    screened = screened_head_applies(model, plan)
    if screened:
        head_fn = lambda hidden: hidden  # noqa: E731  (the screen's select_fn takes them)
    elif plan.output_vocabulary_size:
        head_fn = RestrictedHead(model, inputs["output_token_ids"])
    elif lm_head_is_vocab_major(model, prompt.shape[0]):
        vocab_major = True
        head_fn = lambda hidden: lm_head_logits_vocab_major(model, hidden)  # noqa: E731
    else:
        head_fn = lambda hidden: lm_head_logits(model, hidden)  # noqa: E731

    # The reference gives a prompt's last token (fed by the first loop step) the position
    # of the prompt's non-pad count where positions skip pads; every later token the
    # position of its cache slot. `[rows, 1]` pads before the prompt's last token:
    prompt_pads = None
    if prompt_length > 1 and model.positions_skip_pad_tokens:
        is_pad = tf.equal(prompt[:, : prompt_length - 1], model.config.pad_token_id)
        prompt_pads = tf.reduce_sum(tf.cast(is_pad, tf.int32), axis=1, keepdims=True)

    def step_fn(token_ids, self_cache, cache_index):
        past_length = None
        if prompt_pads is not None:
            is_first_step = tf.cast(tf.equal(cache_index, prompt_length - 1), tf.int32)
            past_length = cache_index - prompt_pads * is_first_step
        hidden, new_cache = model.decode_step(
            token_ids,
            {"self": self_cache, "cross": cross_cache},
            cache_index,
            encoder_attention_mask=encoder_mask,
            return_hidden_states=True,
            past_length=past_length,
        )
        return head_fn(hidden[:, -1, :]), new_cache["self"]

    def reorder_fn(self_cache, row_indices):
        return [(tf.gather(key, row_indices), tf.gather(value, row_indices)) for key, value in self_cache]

    if prompt_length > 1:
        # Prefill all prompt tokens but the last (which the first loop step feeds); the LM
        # head is not needed for them.
        _, prefilled = model.decode_step(
            prompt[:, : prompt_length - 1],
            {"self": self_cache, "cross": cross_cache},
            tf.constant(0, tf.int32),
            encoder_attention_mask=encoder_mask,
            return_hidden_states=True,
        )
        self_cache = prefilled["self"]

    spec = plan.processors
    values = ProcessorValues(
        max_length=inputs["max_length"],
        min_length=inputs["min_length"],
        repetition_penalty=inputs["repetition_penalty"],
        temperature=inputs["temperature"],
        top_p=inputs["top_p"],
        forced_bos_token_id=_repeat_rows(inputs["forced_bos_token_id"], expansion),
        forced_eos_token_id=inputs["forced_eos_token_id"],
    )
    process_fn = LogitsProcessing(spec, values)
    random_key = gen_random.seed_key(inputs["seed"]) if plan.do_sample else None
    select_fn = screened_greedy_select(model, process_fn, prompt.shape[0]) if screened else None

    fill = tf.fill([rows, buffer_length - prompt_length], tf.constant(plan.fill_token_id, tf.int32))
    sequences = tf.ensure_shape(tf.concat([prompt, fill], axis=1), [None, buffer_length])

    if plan.num_beams == 1:
        sequences, lengths = search.greedy_search(
            step_fn,
            self_cache,
            sequences,
            prompt_length,
            inputs["max_length"],
            process_fn,
            is_active_rows,
            plan.eos_token_ids,
            plan.pad_token_id,
            do_sample=plan.do_sample,
            random_key=random_key,
            vocab_major=vocab_major,
            select_fn=select_fn,
        )
        scores = tf.zeros(tf.shape(lengths), tf.float32)
    else:
        sequences, scores, lengths = search.beam_search(
            step_fn,
            reorder_fn,
            self_cache,
            sequences,
            prompt_length,
            inputs["max_length"],
            process_fn,
            inputs["is_active"],
            plan.num_beams,
            spec.vocab_size,
            plan.eos_token_ids,
            inputs["length_penalty_table"],
            inputs["early_stop_when_full"],
            inputs["heuristic_uses_max_length"],
            do_sample=plan.do_sample,
            random_key=random_key,
            vocab_major=vocab_major,
        )
    lengths = tf.where(is_active_rows, lengths, tf.constant(prompt_length, tf.int32))
    return {"sequences": sequences, "sequences_scores": scores, "lengths": lengths}


def select_returned(outputs, plan, num_return_sequences):
    """Keeps the best `num_return_sequences` beams per input (beam search outputs all)."""
    if plan.num_beams == 1 or num_return_sequences == plan.num_beams:
        return outputs
    selected = {}
    for name, value in outputs.items():
        per_input = tf.reshape(value, tf.concat([[-1, plan.num_beams], tf.shape(value)[1:]], 0))
        kept = per_input[:, :num_return_sequences]
        selected[name] = tf.reshape(kept, tf.concat([[-1], tf.shape(value)[1:]], 0))
    return selected


def generate_graph(
    model,
    input_ids,
    attention_mask,
    forced_bos_token_id=NOT_GIVEN,
    *,
    decoder_input_ids=None,
    generation_config=None,
    seed=None,
    **options,
):
    """Generation with graph-only ops, for use inside an exporter's own `tf.function`.

    Args:
        input_ids, attention_mask: `[batch, length]` int tensors (any static or dynamic
            shape; right padding).
        forced_bos_token_id: a `[batch]` int tensor of per-example forced first tokens
            (M2M100 target languages; -1 means "not forced" for that example), or None
            (none forced); left out, the generation config's (as `generate`).
        decoder_input_ids: optional `[batch, prompt_length]` decoder prompt (static
            length). The start token is not prepended (that would change the static
            length): rows must begin with it, as the reference prepends it only when none
            does; a prompt where none does fails an assertion (not checked under XLA).
        generation_config / options: as for `generate`; resolved at trace time, so they
            are constants of the traced graph.
        seed: `[2]` int32 tensor (sampling only); defaults to zeros.

    Returns:
        `{"sequences": [batch * num_return_sequences, longest] int32,
          "sequences_scores": [...] float32, "lengths": [...] int32}`.

    Example:
    >>> @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32)] * 2)
    ... def serve(input_ids, attention_mask):
    ...     return generate_graph(model, input_ids, attention_mask, max_new_tokens=16)
    """
    config = resolve_generation_config(
        model, generation_config, options, caller="generate_graph",
        caller_arguments=("forced_bos_token_id", "decoder_input_ids", "seed"))
    if forced_bos_token_id is NOT_GIVEN:
        forced_bos_token_id = config.forced_bos_token_id
    start, pad, _ = special_tokens(model, config)
    input_ids = tf.cast(input_ids, tf.int32)
    attention_mask = tf.cast(attention_mask, tf.int32)
    batch = tf.shape(input_ids)[0]
    if decoder_input_ids is None:
        prompt = tf.fill([batch, 1], tf.constant(start, tf.int32))
    else:
        prompt = tf.cast(decoder_input_ids, tf.int32)
        starts = tf.reduce_any(tf.equal(prompt[:, 0], start))
        with tf.control_dependencies([tf.debugging.Assert(starts, [
                f"generate_graph: decoder_input_ids rows must begin with the decoder start "
                f"token {start}; none does (generate_graph cannot prepend it)"])]):
            prompt = tf.identity(prompt)
    prompt_length = prompt.shape[1]
    if prompt_length is None:
        raise ValueError("decoder_input_ids must have a static length in generate_graph")
    lengths = resolve_lengths(model, config, prompt_length, "max_length" in options)
    plan = make_plan(
        model, config, lengths, batch_size=None, source_length=None,
        buffer_length=lengths.max_length,
    )
    del pad
    values = runtime_values(config, lengths, plan.buffer_length)
    inputs = {name: tf.constant(value) for name, value in values.items()}
    inputs.update(
        input_ids=input_ids,
        attention_mask=attention_mask,
        is_active=tf.ones([batch], tf.bool),
        decoder_prompt=prompt,
        forced_bos_token_id=(
            tf.fill([batch], -1) if forced_bos_token_id is None
            else tf.cast(tf.broadcast_to(forced_bos_token_id, [batch]), tf.int32)
        ),
        seed=tf.zeros([2], tf.int32) if seed is None else tf.cast(seed, tf.int32),
    )
    outputs = select_returned(run_search(model, plan, inputs), plan, config.num_return_sequences)
    longest = tf.reduce_max(outputs["lengths"])
    outputs["sequences"] = outputs["sequences"][:, :longest]
    return outputs
