"""Shared machinery of the in-graph SentencePiece tokenizers."""

import numpy as np
import keras
import tensorflow as tf

from tfmodels.tokenizers import hf_tokenizer_files
from tfmodels.tokenizers import text_graph_ops as ops

PADDING_STRATEGIES = ("longest", "max_length", "do_not_pad")


class SentencePieceTokenizerBase(keras.layers.Layer):
    """Base class: added-token splitting, truncation, padding, decoding.

    Subclasses own the model-specific parts: how a text segment becomes ids
    (`_encode_text_segments`), which special tokens frame a sequence
    (`_add_special_tokens`), and the per-id decoding tables. Everything that
    runs on tensors uses TensorFlow and tensorflow-text ops only, so the layer
    works in `tf.function`, `tf.data` and an exported SavedModel.

    Behaviour follows the transformers 4.57 *slow* tokenizers (the reference):
    text is first split on added tokens (with their strip flags), each
    remaining segment is encoded with SentencePiece on its own, and decoding
    rebuilds the string with the same chunking rules.
    """

    # Set by subclasses.
    num_special_tokens_to_add = 0
    _strip_first_piece_prefix = False  # T5: drop "▁" of a chunk's first piece
    _space_before_special_runs = False  # T5: " " before pieces ending at a special

    def __init__(
        self,
        additional_special_tokens=None,
        added_tokens_decoder=None,
        model_max_length=None,
        clean_up_tokenization_spaces=False,
        nbest_size=0,
        alpha=1.0,
        **kwargs,
    ):
        # Ids are integers; an int32 dtype policy keeps Keras from casting.
        kwargs.setdefault("dtype", "int32")
        kwargs["trainable"] = False
        super().__init__(**kwargs)
        self._convert_input_args = False
        self._allow_non_tensor_positional_args = True
        self.built = True
        if model_max_length is not None and model_max_length >= hf_tokenizer_files.VERY_LARGE_INTEGER:
            model_max_length = None
        self.model_max_length = model_max_length
        self.clean_up_tokenization_spaces = bool(clean_up_tokenization_spaces)
        self.nbest_size = int(nbest_size)
        self.alpha = float(alpha)
        self.additional_special_tokens = (
            None if additional_special_tokens is None else list(additional_special_tokens)
        )
        self.added_tokens_decoder = (
            None
            if not added_tokens_decoder
            else {int(k): hf_tokenizer_files.AddedTokenSpec.from_value(v)
                  for k, v in added_tokens_decoder.items()}
        )
        self._vocabulary_ready = False

    # ------------------------------------------------------------------ setup

    @property
    def sampling_enabled(self):
        """Whether subword regularisation is on (`nbest_size` not 0 or 1)."""
        return self.nbest_size not in (0, 1)

    def _check_ready(self):
        if not self._vocabulary_ready:
            raise ValueError(
                f"{type(self).__name__} has no vocabulary yet. Build it with "
                "`from_pretrained(directory)`, pass `proto=...`, or call "
                "`load_assets(directory)` after `from_config`."
            )

    def _set_added_tokens(self, resolved):
        """Builds the added-token splitter and the special-token id sets."""
        self._resolved = resolved
        self._added_token_ids = resolved.added_token_ids
        contents = sorted(
            (c for c in self._added_token_ids if c), key=lambda c: (-len(c), c)
        )
        if not contents:
            self._split_pattern = None
            return
        ws = ops.PYTHON_WHITESPACE_CLASS
        alternatives = []
        for content in contents:
            spec = resolved.added_tokens[self._added_token_ids[content]]
            alternatives.append(
                (f"{ws}*" if spec.lstrip else "")
                + ops.re2_literal(content)
                + (f"{ws}*" if spec.rstrip else "")
            )
        # Longest first, so that at one position the longest token wins, like
        # the reference's trie.
        self._split_pattern = "(?:" + "|".join(alternatives) + ")"
        self._split_escapes_nul = ops.pattern_allows_nul_escape(contents)
        self._added_contents = tf.constant(contents, tf.string)
        self._added_content_ids = tf.constant(
            [self._added_token_ids[c] for c in contents], tf.int32
        )
        self._added_content_special = tf.constant(
            [c in set(resolved.all_special_tokens) for c in contents], tf.bool
        )
        self._added_content_table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                self._added_contents, tf.range(len(contents), dtype=tf.int32)
            ),
            default_value=-1,
        )

    def _set_decoding_tables(
        self,
        token_strings,
        token_kinds,
        piece_kinds,
        stripped_piece_kinds,
        skip_flags,
        decode_proto_normalizer,
        unk_surface,
        out_of_range_index,
    ):
        """Per-id arrays used by `detokenize`.

        `out_of_range_index` is the row used for ids outside the table, or
        None when such ids are an error (as in the reference).
        """
        self._id_token_strings = tf.constant(np.array(token_strings, dtype=object), tf.string)
        self._id_token_kinds = tf.constant(token_kinds, tf.int32)
        self._id_piece_kinds = tf.constant(piece_kinds, tf.int32)
        self._id_stripped_piece_kinds = tf.constant(stripped_piece_kinds, tf.int32)
        self._id_skip = tf.constant(skip_flags, tf.bool)
        self._table_size = len(token_strings)
        self._out_of_range_index = out_of_range_index
        # SentencePiece drops a leading "▁" at the start of decoded text when
        # the model adds a dummy prefix or removes extra whitespace; with the
        # latter it keeps dropping until some text is produced.
        self._decode_consumes_leading_space = bool(
            decode_proto_normalizer.add_dummy_prefix
            or decode_proto_normalizer.remove_extra_whitespaces
        )
        self._decode_resets_after_consume = bool(decode_proto_normalizer.remove_extra_whitespaces)
        self._unk_surface = unk_surface

    # ----------------------------------------------------------- input utils

    def _to_string_batch(self, inputs):
        """Returns (rank-1 string tensor, was_scalar)."""
        if isinstance(inputs, tf.RaggedTensor):
            raise ValueError(f"{type(self).__name__} takes a scalar or a 1-D batch of strings, not a RaggedTensor.")
        if isinstance(inputs, (list, tuple)) and len(inputs) == 0:
            inputs = tf.constant([], dtype=tf.string)
        if not tf.is_tensor(inputs):
            try:
                inputs = tf.convert_to_tensor(inputs)
            except (TypeError, ValueError) as error:
                raise TypeError(f"{type(self).__name__} expects strings, got {inputs!r:.100}") from error
        if inputs.dtype != tf.string:
            raise TypeError(
                f"{type(self).__name__} expects string inputs (tf.string), got dtype {inputs.dtype.name}."
            )
        rank = inputs.shape.rank
        if rank is None:
            raise ValueError("The rank of the input strings must be known statically (0 or 1).")
        if rank == 0:
            return tf.reshape(inputs, [1]), True
        if rank != 1:
            raise ValueError(f"Expected a scalar or a 1-D batch of strings, got shape {inputs.shape}.")
        return inputs, False

    def _to_flat_ids(self, ids):
        """Returns (flat int64 ids, int32 sequence index per id, num sequences, was_1d).

        The ids stay int64 until `_lookup_rows` has checked their range, so
        that wide ids cannot wrap around into the vocabulary.
        """
        if not isinstance(ids, (tf.RaggedTensor, tf.Tensor)):
            if isinstance(ids, (list, tuple)) and ids and isinstance(ids[0], (list, tuple, np.ndarray)):
                if len({len(row) for row in ids}) > 1:
                    ids = tf.ragged.constant(ids)
            if not isinstance(ids, tf.RaggedTensor):
                try:
                    ids = tf.convert_to_tensor(ids)
                except (TypeError, ValueError) as error:
                    raise TypeError(f"Token ids must be integers, got {ids!r:.100}") from error
                if ids.dtype == tf.float32 and ids.shape.num_elements() == 0:
                    ids = tf.cast(ids, tf.int32)  # an empty Python list: no dtype to check
        if not ids.dtype.is_integer:
            raise TypeError(f"Token ids must be integers, got dtype {ids.dtype.name}.")
        rank = ids.shape.rank
        if rank not in (1, 2):
            raise ValueError(f"Token ids must have rank 1 or 2, got shape {ids.shape}.")
        if isinstance(ids, tf.RaggedTensor):
            flat = ids.values
            sequence = tf.cast(ids.value_rowids(), tf.int32)
            num_sequences = tf.cast(ids.nrows(), tf.int32)
        elif rank == 1:
            flat = ids
            sequence = tf.zeros(tf.shape(ids), tf.int32)
            num_sequences = tf.constant(1, tf.int32)
        else:
            shape = tf.shape(ids)
            flat = tf.reshape(ids, [-1])
            sequence = tf.repeat(tf.range(shape[0]), shape[1])
            num_sequences = shape[0]
        return tf.cast(flat, tf.int64), sequence, num_sequences, rank == 1

    # ------------------------------------------------------------- tokenize

    def _prepare_texts(self, texts):
        """Model-specific rewriting of whole input strings (default: none)."""
        return texts

    def _encode_text_segments(self, texts):
        """Ids of text segments that contain no added token: [n] -> [n, (ids)]."""
        raise NotImplementedError

    def _postprocess_segments(self, segment_splits, segment_ids, is_added, added_index):
        """Hook to edit per-segment ids before they are concatenated.

        `segment_splits` are the row splits grouping segments by text.
        """
        return segment_ids

    def _add_special_tokens(self, content_ids, is_target, **kwargs):
        raise NotImplementedError

    def _tokenize_without_special_tokens(self, texts):
        """[batch] strings -> ragged [batch, (ids)] without special tokens."""
        self._check_ready()
        texts = self._prepare_texts(texts)
        if self._split_pattern is None:
            flat = texts
            segment_splits = tf.range(tf.size(texts, out_type=tf.int64) + 1)
            is_added = tf.zeros_like(flat, dtype=tf.bool)
            added_index = tf.fill(tf.shape(flat), -1)
        else:
            # Added tokens (with the whitespace they strip) become their own
            # segments; empty segments are dropped, as the reference does.
            flat, segment_splits = ops.regex_split_keep_delimiters(
                texts, self._split_pattern, escape_nul=self._split_escapes_nul
            )
            is_added = tf.strings.regex_full_match(flat, self._split_pattern)
            exact = self._added_content_table.lookup(flat)
            stripped = self._added_content_table.lookup(ops.python_strip(flat))
            added_index = tf.where(is_added, tf.where(exact >= 0, exact, stripped), -1)
        content = tf.where(is_added, tf.zeros_like(flat), flat)
        segment_ids = self._encode_text_segments(content)
        if self._split_pattern is not None:
            found = tf.boolean_mask(added_index, is_added)
            added_rows = tf.RaggedTensor.from_row_lengths(
                tf.gather(self._added_content_ids, found), tf.cast(is_added, tf.int64), validate=False
            )
            segment_ids = ops.concat_ragged_rows([segment_ids, added_rows])
        segment_ids = self._postprocess_segments(segment_splits, segment_ids, is_added, added_index)
        # Concatenate each text's segments.
        token_splits = tf.gather(tf.cast(segment_ids.row_splits, tf.int64), segment_splits)
        return tf.RaggedTensor.from_row_splits(segment_ids.values, token_splits, validate=False)

    def _truncate(self, content_ids, max_length):
        """Right truncation keeping room for the special tokens.

        Like the reference, a sequence is left untouched when it is too short
        to remove the required number of tokens.
        """
        lengths = content_ids.row_lengths()
        to_remove = lengths + self.num_special_tokens_to_add - max_length
        keep = tf.where((to_remove > 0) & (lengths > to_remove), lengths - to_remove, lengths)
        return ops.ragged_take_rows(content_ids, tf.zeros_like(keep), keep)

    def _resolve_padding_truncation(self, padding, truncation, max_length, pad_to_multiple_of):
        """transformers' `_get_padding_truncation_strategies` for one sequence."""
        if max_length is not None and padding is False and truncation is None:
            truncation = True
        if padding is True:
            padding = "longest"
        elif padding is False or padding is None:
            padding = "do_not_pad"
        if padding not in PADDING_STRATEGIES:
            raise ValueError(f"padding must be one of True, False, {PADDING_STRATEGIES}; got {padding!r}.")
        if truncation in (None, False, "do_not_truncate"):
            truncate = False
        elif truncation in (True, "longest_first", "only_first"):
            truncate = True
        else:
            raise ValueError(f"Unsupported truncation {truncation!r} for single sequences.")
        if max_length is None:
            if padding == "max_length":
                if self.model_max_length is None:
                    padding = "do_not_pad"
                else:
                    max_length = self.model_max_length
            if truncate:
                if self.model_max_length is None:
                    truncate = False
                else:
                    max_length = self.model_max_length
        if (
            truncate
            and padding != "do_not_pad"
            and pad_to_multiple_of is not None
            and max_length is not None
            and max_length % pad_to_multiple_of != 0
        ):
            raise ValueError(
                f"Truncation and padding are both activated but truncation length ({max_length}) "
                f"is not a multiple of pad_to_multiple_of ({pad_to_multiple_of})."
            )
        return padding, truncate, max_length

    def _pad(self, ids, padding, max_length, pad_to_multiple_of):
        lengths = ids.row_lengths()
        longest = tf.cast(tf.reduce_max(tf.concat([lengths, [0]], axis=0)), tf.int64)

        def round_up(length):
            if not pad_to_multiple_of:
                return length
            multiple = tf.constant(pad_to_multiple_of, tf.int64)
            return (length + multiple - 1) // multiple * multiple

        if padding == "max_length":
            # Sequences longer than max_length (not truncated) stay whole and
            # unpadded, as in the reference; in a dense batch the shorter
            # rows are then padded up to the longest one.
            target = tf.maximum(round_up(tf.constant(max_length, tf.int64)), longest)
        else:
            target = round_up(longest)
        dense = ids.to_tensor(default_value=self.pad_token_id, shape=tf.stack([ids.nrows(), target]))
        mask = tf.sequence_mask(lengths, target, dtype=tf.int32)
        return dense, mask

    def _encode_batch(self, texts, is_target, padding, truncate, max_length, pad_to_multiple_of, **kwargs):
        strings, was_scalar = self._to_string_batch(texts)
        content = self._tokenize_without_special_tokens(strings)
        if truncate and max_length:
            content = self._truncate(content, max_length)
        ids = self._add_special_tokens(content, is_target, batch_size=tf.shape(strings)[0], **kwargs)
        if padding == "do_not_pad":
            input_ids = ids
            mask = tf.ones_like(ids)
        else:
            input_ids, mask = self._pad(ids, padding, max_length, pad_to_multiple_of)
        if was_scalar:
            input_ids, mask = input_ids[0], mask[0]
        return {"input_ids": input_ids, "attention_mask": mask}

    @tf.autograph.experimental.do_not_convert
    def tokenize(self, inputs, **kwargs):
        """Token ids with special tokens, as the reference's `input_ids`.

        Args:
            inputs: a string, a list of strings, or a `tf.string` tensor of
                rank 0 or 1.

        Returns:
            int32 ids: a 1-D `tf.Tensor` for a scalar input, otherwise a
            `tf.RaggedTensor` of shape `[batch, (tokens)]`.
        """
        strings, was_scalar = self._to_string_batch(inputs)
        content = self._tokenize_without_special_tokens(strings)
        ids = self._add_special_tokens(content, False, batch_size=tf.shape(strings)[0], **kwargs)
        return ids[0] if was_scalar else ids

    @tf.autograph.experimental.do_not_convert
    def call(
        self,
        inputs=None,
        text_target=None,
        padding="longest",
        truncation=None,
        max_length=None,
        pad_to_multiple_of=None,
        **kwargs,
    ):
        """Model inputs, like calling a transformers tokenizer.

        Args:
            inputs: the source text(s): a string, list of strings or rank 0/1
                `tf.string` tensor.
            text_target: optional target text(s); their ids are returned
                under `"labels"` (padded with the pad id, as the reference).
            padding: `"longest"` (default, also `True`), `"max_length"`, or
                `False` (ragged output).
            truncation: `True`/`"longest_first"` truncates from the right to
                `max_length`, keeping the special tokens. When `None`, it is
                switched on only if `max_length` is given with
                `padding=False` (the reference's rule).
            max_length: length to truncate/pad to (defaults to
                `model_max_length` where the reference uses it).
            pad_to_multiple_of: round the padded length up to a multiple.

        Returns:
            dict with int32 `"input_ids"` and `"attention_mask"` of shape
            `[batch, length]` (`[length]` for a scalar input), plus `"labels"`
            when `text_target` is given. With `padding=False` the batched
            values are `tf.RaggedTensor`s.
        """
        padding, truncate, max_length = self._resolve_padding_truncation(
            padding, truncation, max_length, pad_to_multiple_of
        )
        source_kwargs, target_kwargs = self._split_call_kwargs(kwargs)
        options = dict(padding=padding, truncate=truncate, max_length=max_length, pad_to_multiple_of=pad_to_multiple_of)
        outputs = None
        if inputs is not None:
            outputs = self._encode_batch(inputs, False, **options, **source_kwargs)
        if text_target is not None:
            targets = self._encode_batch(text_target, True, **options, **target_kwargs)
            if outputs is None:
                return targets
            outputs["labels"] = targets["input_ids"]
        if outputs is None:
            raise ValueError("You need to give `inputs` and/or `text_target`.")
        return outputs

    def compute_output_spec(
        self, inputs=None, text_target=None, padding="longest", truncation=None, max_length=None,
        pad_to_multiple_of=None, **kwargs,
    ):
        # Symbolic (functional-model) calls: shapes depend on the text, so
        # only the rank is known. This also lets Keras rebuild a saved model
        # before `load_assets` has restored the vocabulary.
        padded = padding not in (False, None, "do_not_pad")

        def ids_spec(texts):
            batched = len(texts.shape) >= 1
            shape = (texts.shape[0], None) if batched else (None,)
            return keras.KerasTensor(shape, dtype="int32", ragged=batched and not padded)

        outputs = None
        if inputs is not None:
            outputs = {"input_ids": ids_spec(inputs), "attention_mask": ids_spec(inputs)}
        if text_target is not None:
            if outputs is None:
                return {"input_ids": ids_spec(text_target), "attention_mask": ids_spec(text_target)}
            outputs["labels"] = ids_spec(text_target)
        return outputs

    def _split_call_kwargs(self, kwargs):
        if kwargs:
            raise TypeError(f"Unexpected arguments for {type(self).__name__}: {sorted(kwargs)}")
        return {}, {}

    # ----------------------------------------------------------- detokenize

    def _lookup_rows(self, flat_ids):
        """int32 row of the per-id tables for each int64 id; checks validity."""
        size = self._table_size
        in_range = (flat_ids >= 0) & (flat_ids < size)
        if self._out_of_range_index is not None:
            return tf.cast(tf.where(in_range, flat_ids, self._out_of_range_index), tf.int32)
        safe = tf.cast(tf.where(in_range, flat_ids, 0), tf.int32)
        valid = in_range & tf.not_equal(tf.gather(self._id_token_kinds, safe), ops.TOKEN_INVALID)
        bad = tf.boolean_mask(flat_ids, tf.logical_not(valid))
        check = tf.debugging.Assert(
            tf.reduce_all(valid),
            [tf.strings.join(["Token id(s) out of range for this vocabulary: ",
                              tf.strings.reduce_join(tf.strings.as_string(bad[:10]), separator=", ")])],
        )
        with tf.control_dependencies([check]):
            return tf.identity(safe)

    def decodable_token_ids(self):
        """The ids `detokenize` accepts, ascending (int32 numpy); None when it accepts any.

        A model's embedding table can be larger than its tokenizer (mT5: 250,112 rows for
        250,100 ids), so generation can produce ids that nothing decodes.
        """
        if self._out_of_range_index is not None:
            return None
        kinds = np.asarray(self._id_token_kinds)
        return np.flatnonzero(kinds != ops.TOKEN_INVALID).astype(np.int32)

    @tf.autograph.experimental.do_not_convert
    def detokenize(self, ids, skip_special_tokens=False, clean_up_tokenization_spaces=None):
        """Strings from ids, as the reference's `decode`/`batch_decode`.

        Args:
            ids: int ids, rank 1 (one sequence) or rank 2 (dense or ragged
                batch). Padding ids are decoded like any other id (as in the
                reference); use `skip_special_tokens=True` to drop them.
            skip_special_tokens: drop special tokens.
            clean_up_tokenization_spaces: apply the reference's English
                clean-up; defaults to the checkpoint setting.

        Returns:
            A scalar `tf.string` for rank-1 input, else `[batch]` strings.
        """
        self._check_ready()
        if clean_up_tokenization_spaces is None:
            clean_up_tokenization_spaces = self.clean_up_tokenization_spaces
        flat_ids, sequence, num_sequences, was_1d = self._to_flat_ids(ids)
        rows = self._lookup_rows(flat_ids)
        if skip_special_tokens:
            keep = tf.logical_not(tf.gather(self._id_skip, rows))
            rows = tf.boolean_mask(rows, keep)
            sequence = tf.boolean_mask(sequence, keep)
        text = self._decode_flat(rows, sequence, num_sequences)
        if clean_up_tokenization_spaces:
            text = ops.clean_up_tokenization(text)
        return text[0] if was_1d else text

    def _decode_flat(self, rows, sequence, num_sequences):
        """Decodes all sequences at once from flat per-token arrays.

        The reference walks the tokens of a sequence, splits them into
        chunks at "legacy added" tokens (T5 sentinels, M2M100 language
        tokens), decodes each chunk with SentencePiece (special tokens are
        written out as text; each run of pieces between them is decoded on
        its own), strips each chunk, and joins chunks and added tokens with
        spaces. Here every step is a vectorised segment operation.
        """
        kinds = tf.gather(self._id_token_kinds, rows)
        tokens = tf.gather(self._id_token_strings, rows)
        count = tf.size(rows)
        first_in_sequence = tf.concat([[True], tf.not_equal(sequence[1:], sequence[:-1])], axis=0)[:count]
        previous_kind = tf.where(first_in_sequence, -1, tf.concat([[-1], kinds[:-1]], axis=0)[:count])
        is_piece = tf.equal(kinds, ops.TOKEN_PIECE)
        is_special = tf.equal(kinds, ops.TOKEN_SPECIAL)
        is_legacy = tf.equal(kinds, ops.TOKEN_LEGACY_ADDED)

        # Items: each legacy added token, and each chunk between them.
        item_start = first_in_sequence | is_legacy | tf.equal(previous_kind, ops.TOKEN_LEGACY_ADDED)
        item = tf.cumsum(tf.cast(item_start, tf.int32)) - 1
        num_items = tf.reduce_max(tf.concat([item, [-1]], axis=0)) + 1
        chunk_first = item_start & tf.logical_not(is_legacy)
        run_start = is_piece & tf.not_equal(previous_kind, ops.TOKEN_PIECE)

        # SentencePiece surfaces of the pieces (T5 strips "▁" off the first
        # piece of a chunk before decoding it).
        piece_kinds = tf.gather(self._id_piece_kinds, rows)
        if self._strip_first_piece_prefix:
            strip = chunk_first & is_piece & ops.starts_with(tokens, ops.META_SPACE)
            pieces = tf.where(strip, tf.strings.regex_replace(tokens, "^" + ops.META_SPACE, ""), tokens)
            piece_kinds = tf.where(strip, tf.gather(self._id_stripped_piece_kinds, rows), piece_kinds)
        else:
            pieces = tokens
        at_start, later, ends_start = ops.piece_surfaces(
            pieces,
            piece_kinds,
            self._decode_consumes_leading_space,
            self._decode_resets_after_consume,
            self._unk_surface,
        )
        ends_start = tf.cast(ends_start & is_piece, tf.int32)
        phase = ops.exclusive_cumsum_within_segments(ends_start, run_start)
        surface = tf.where(tf.equal(phase, 0), at_start, later)

        if self._space_before_special_runs:
            # " " + decode(run) + special: the space goes before a run that
            # follows a special token and is closed by another one (a space
            # at the start of a chunk is stripped anyway).
            specials_so_far = tf.cumsum(tf.cast(is_special, tf.int32))
            specials_in_item = tf.math.unsorted_segment_max(specials_so_far, item, num_items)
            special_follows = tf.gather(specials_in_item, item) > specials_so_far
            space = run_start & tf.equal(previous_kind, ops.TOKEN_SPECIAL) & special_follows
            surface = tf.where(space, tf.strings.join([" ", surface]), surface)

        token_text = tf.where(is_piece, surface, tokens)
        item_text = tf.strings.unsorted_segment_join(token_text, item, num_items)
        item_is_legacy = tf.math.unsorted_segment_max(tf.cast(is_legacy, tf.int32), item, num_items) > 0
        item_sequence = tf.math.unsorted_segment_max(sequence, item, num_items)
        item_text = tf.where(item_is_legacy, item_text, ops.python_strip(item_text))
        last_item = tf.concat([tf.not_equal(item_sequence[1:], item_sequence[:-1]), [True]], axis=0)[:num_items]
        # Chunks that decode to "" are dropped, except the final one.
        keep = item_is_legacy | (tf.strings.length(item_text) > 0) | last_item
        return tf.strings.unsorted_segment_join(
            tf.boolean_mask(item_text, keep),
            tf.boolean_mask(item_sequence, keep),
            num_sequences,
            separator=" ",
        )

    # ------------------------------------------------------- vocabulary API

    def token_to_id(self, token):
        """Id of a token string (added tokens first, then the vocabulary)."""
        self._check_ready()
        return self._lookup_token_id(token)

    def _lookup_token_id(self, token):
        if token in self._added_token_ids:
            return self._added_token_ids[token]
        return self._convert_token_to_id(token)

    def id_to_token(self, token_id):
        """Token string of an id (what the reference's `convert_ids_to_tokens` gives)."""
        self._check_ready()
        return self._token_strings_py[int(token_id)]

    def get_vocabulary(self):
        """All token strings, indexed by id."""
        self._check_ready()
        return list(self._token_strings_py)

    def vocabulary_size(self):
        """Number of ids, added tokens included (the reference's `len(tokenizer)`)."""
        self._check_ready()
        return len(self._token_strings_py)

    @property
    def all_special_tokens(self):
        self._check_ready()
        return list(self._resolved.all_special_tokens)

    @property
    def all_special_ids(self):
        self._check_ready()
        return [self.token_to_id(t) for t in self._resolved.all_special_tokens]

    # --------------------------------------------------------------- config

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "model_max_length": self.model_max_length,
                "clean_up_tokenization_spaces": self.clean_up_tokenization_spaces,
                "nbest_size": self.nbest_size,
                "alpha": self.alpha,
                "additional_special_tokens": self._additional_json(),
                "added_tokens_decoder": self._added_tokens_decoder_json(),
            }
        )
        config.pop("trainable", None)
        return config

    def _additional_json(self):
        """`additional_special_tokens` as the reference's JSON files write them (or None)."""
        if self.additional_special_tokens is None:
            return None
        return [hf_tokenizer_files.token_to_json(t) for t in self.additional_special_tokens]

    def _added_tokens_decoder_json(self):
        """`added_tokens_decoder` as the reference's `tokenizer_config.json` writes it
        (string ids), or None when there is none."""
        if not self.added_tokens_decoder:
            return None
        return {str(k): v.to_json() for k, v in self.added_tokens_decoder.items()}

    def save_assets(self, dir_path):
        self.save_pretrained(dir_path)
