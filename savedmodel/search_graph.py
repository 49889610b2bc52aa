"""The generation graph of an export: `tfmodels.generation`'s search with some run-time knobs.

`ExportedSearch` is what `generate_graph` does, taken one level lower so that an export
can (a) feed `max_length`, `min_length` and the length-penalty table as run-time tensors
(the `generate_with_options` signature) while the token buffer and KV cache keep the
static size of the exported limit, and (b) get uncropped, fixed-size outputs, which an
XLA-compiled function needs (cropping to the longest row is a data-dependent shape).

The search is the same `run_search` (one `tf.while_loop`, static KV cache) that
`model.generate()` compiles, so an export returns the ids `generate` returns.
"""

import tensorflow as tf

from tfmodels.generation.graph import run_search, select_returned
from tfmodels.generation.options import (
    make_plan,
    resolve_generation_config,
    resolve_lengths,
    runtime_values,
    special_tokens,
)

PROMPT_LENGTH = 1  # the decoder prompt is the decoder start token alone


def length_penalty_table(length_penalty, buffer_length):
    """In-graph twin of `options.length_penalty_table`: `[buffer_length + 1]` float32 with
    `n ** length_penalty` computed in float64 and rounded once; entry 0 is 1."""
    n = tf.range(buffer_length + 1, dtype=tf.float64)
    n = tf.where(tf.equal(n, 0.0), tf.constant(1.0, tf.float64), n)
    return tf.cast(tf.pow(n, tf.cast(length_penalty, tf.float64)), tf.float32)


class ExportedSearch:
    """One static search plan (beams, processors, buffer size) and its default values.

    Args:
        model: an mT5 / M2M100 `...ForConditionalGeneration`.
        generation_options: resolved `GenerationConfig` options (see
            `ExportSettings.generation_options`); `max_new_tokens` sets the buffer size.

    Example (eagerly here; the signatures run it inside their graphs):
    >>> from savedmodel.checkpoint import load_checkpoint
    >>> from savedmodel.export_settings import ExportSettings
    >>> from tfmodels import BUNDLED_TRANSLATOR_DIR
    >>> model, tokenizer = load_checkpoint(BUNDLED_TRANSLATOR_DIR)
    >>> settings = ExportSettings(max_new_tokens=16).with_checkpoint_defaults(model)
    >>> search = ExportedSearch(model, settings.generation_options())
    >>> batch = tokenizer(["Switzerland", "January"], src_lang="en")
    >>> german = tf.fill([2], tokenizer.get_lang_id("de"))
    >>> sequences, scores, lengths = search.run(
    ...     batch["input_ids"], batch["attention_mask"], tf.constant([True, True]), german,
    ...     search.default_knobs())
    >>> tokenizer.detokenize(sequences, skip_special_tokens=True).numpy().tolist()
    [b'Schweiz', b'Januar']
    """

    # Names, dtypes and shapes of the run-time knobs (`buffer_length + 1` for the table).
    KNOB_NAMES = ("max_length", "min_length", "length_penalty_table", "heuristic_uses_max_length")

    def __init__(self, model, generation_options):
        self.model = model
        self.config = resolve_generation_config(model, None, dict(generation_options))
        self.lengths = resolve_lengths(model, self.config, PROMPT_LENGTH, False)
        self.plan = make_plan(
            model, self.config, self.lengths, batch_size=None, source_length=None,
            buffer_length=self.lengths.max_length,
        )
        self.start_token_id, self.pad_token_id, self.eos_token_ids = special_tokens(model, self.config)
        self.defaults = runtime_values(self.config, self.lengths, self.plan.buffer_length)
        forced = self.config.forced_bos_token_id
        self.default_forced_bos_token_id = -1 if forced is None else int(forced)

    @property
    def buffer_length(self):
        return self.plan.buffer_length

    @property
    def max_new_tokens(self):
        return self.lengths.max_length - PROMPT_LENGTH

    def knob_signature(self):
        """`tf.TensorSpec`s of the knobs, in `KNOB_NAMES` order."""
        return [
            tf.TensorSpec([], tf.int32, name="max_length"),
            tf.TensorSpec([], tf.int32, name="min_length"),
            tf.TensorSpec([self.buffer_length + 1], tf.float32, name="length_penalty_table"),
            tf.TensorSpec([], tf.bool, name="heuristic_uses_max_length"),
        ]

    def default_knobs(self):
        """The export-time values of the knobs as constant tensors."""
        return [tf.constant(self.defaults[name]) for name in self.KNOB_NAMES]

    def knobs(self, max_new_tokens, min_new_tokens, length_penalty):
        """Knob tensors from request options (int32 / int32 / float32 scalars)."""
        early_stopping = self.config.early_stopping
        return [
            max_new_tokens + PROMPT_LENGTH,
            min_new_tokens + PROMPT_LENGTH,
            length_penalty_table(length_penalty, self.buffer_length),
            tf.logical_and(tf.constant(early_stopping == "never"), length_penalty > 0.0),
        ]

    def run(self, input_ids, attention_mask, is_active, forced_bos_token_id, knobs):
        """The search for `[batch, length]` int32 inputs.

        Args:
            is_active: `[batch]` bool, False for rows that only pad the batch.
            forced_bos_token_id: `[batch]` int32 first tokens to force (-1 = none).
            knobs: tensors in `KNOB_NAMES` order.

        Returns:
            `(sequences [batch, buffer_length] int32, scores [batch] float32,
              lengths [batch] int32)`: the best hypothesis per row; positions at and
            after a row's length hold the pad id.
        """
        batch = tf.shape(input_ids)[0]
        inputs = {name: tf.constant(value) for name, value in self.defaults.items()}
        inputs.update(zip(self.KNOB_NAMES, knobs))
        inputs.update(
            input_ids=input_ids,
            attention_mask=attention_mask,
            is_active=is_active,
            decoder_prompt=tf.fill([batch, PROMPT_LENGTH], tf.constant(self.start_token_id, tf.int32)),
            forced_bos_token_id=forced_bos_token_id,
            seed=tf.zeros([2], tf.int32),
        )
        outputs = select_returned(run_search(self.model, self.plan, inputs), self.plan, 1)
        lengths = outputs["lengths"]
        inside = tf.range(self.buffer_length, dtype=tf.int32)[tf.newaxis, :] < lengths[:, tf.newaxis]
        sequences = tf.where(inside, outputs["sequences"], tf.constant(self.pad_token_id, tf.int32))
        return sequences, outputs["sequences_scores"], lengths
