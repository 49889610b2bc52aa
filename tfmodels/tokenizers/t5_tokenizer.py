"""In-graph mT5 / T5 tokenizer."""

import os

import keras
import tensorflow as tf

from tfmodels.tokenizers import hf_tokenizer_files as hf_files
from tfmodels.tokenizers import sentencepiece_model
from tfmodels.tokenizers import text_graph_ops as ops
from tfmodels.tokenizers.exact_unigram_encoder import ExactUnigramEncoder
from tfmodels.tokenizers.graph_sentencepiece import GraphSentencepiece
from tfmodels.tokenizers.sentencepiece_tokenizer_base import SentencePieceTokenizerBase

SPIECE_FILE = "spiece.model"


@keras.saving.register_keras_serializable(package="tfmodels")
class T5Tokenizer(SentencePieceTokenizerBase):
    """mT5/T5 SentencePiece tokenizer as a Keras layer, run with TF ops.

    Produces exactly the ids of transformers' slow `T5Tokenizer` (4.57): "</s>"
    appended (unless the text already ends with it), sentinel tokens
    `<extra_id_N>` and literal `</s>`, `<pad>`, `<unk>` in the text mapped to
    single ids, and the `legacy` flag with the same meaning. Tokenization and
    decoding are TensorFlow / tensorflow-text ops, so the layer can be used in
    `tf.data`, `tf.function` and exported SavedModels. Python SentencePiece is
    only used while loading.

    Sentinels: `extra_ids` tokens are added after the SentencePiece
    vocabulary, `<extra_id_0>` having the largest id
    (`sp_vocab_size + extra_ids - 1`) and `<extra_id_{extra_ids-1}>` the
    smallest (`sp_vocab_size`), as in the reference.

    Args:
        proto: serialized SentencePiece model (bytes) or a path to
            `spiece.model`. May be None when the layer is rebuilt from a
            config; the vocabulary then comes from `load_assets`.
        extra_ids: number of sentinel tokens to add.
        additional_special_tokens: extra special tokens (strings or dicts with
            `content`, `lstrip`, `rstrip`, ...), as in the reference.
        eos_token, unk_token, pad_token: special token strings.
        legacy: `None`/`True` for the reference's legacy behaviour (each text
            piece between special tokens gets SentencePiece's dummy "▁"
            prefix), `False` for the fixed behaviour.
        add_prefix_space: the reference's flag (prepends "▁" to the text when
            `legacy=False`, strips it again when decoding).
        added_tokens_decoder: `{id: token dict}` from a checkpoint saved by a
            recent transformers version (overrides flags and ids).
        model_max_length: default length for truncation/`"max_length"`.
        clean_up_tokenization_spaces: default for `detokenize`.
        nbest_size, alpha: subword regularisation (off by default). With
            `nbest_size` not 0 or 1, tokenization samples a segmentation
            (`nbest_size > 1`: among the n best; `< 0`: from the whole
            lattice) with smoothing `alpha`. Use it for training inputs only.

    Example:

    >>> from tfmodels.tokenizers import T5Tokenizer
    >>> tokenizer = T5Tokenizer.from_pretrained("tests/data/mt5_tokenizer")
    >>> batch = tokenizer(["Hello world!", "<extra_id_0> Bonjour"])
    >>> batch["input_ids"].dtype, batch["input_ids"].shape[0]
    (tf.int32, 2)
    >>> ids = tokenizer.tokenize("Hello <extra_id_0>.")
    >>> int(ids[-1]) == tokenizer.eos_token_id
    True
    >>> tokenizer.detokenize(ids, skip_special_tokens=True).numpy().decode()  # as the reference
    'Hello .'
    """

    num_special_tokens_to_add = 1
    _space_before_special_runs = True

    def __init__(
        self,
        proto=None,
        extra_ids=100,
        additional_special_tokens=None,
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        legacy=None,
        add_prefix_space=True,
        added_tokens_decoder=None,
        model_max_length=None,
        clean_up_tokenization_spaces=False,
        nbest_size=0,
        alpha=1.0,
        **kwargs,
    ):
        super().__init__(
            additional_special_tokens=additional_special_tokens,
            added_tokens_decoder=added_tokens_decoder,
            model_max_length=model_max_length,
            clean_up_tokenization_spaces=clean_up_tokenization_spaces,
            nbest_size=nbest_size,
            alpha=alpha,
            **kwargs,
        )
        self.extra_ids = int(extra_ids)
        self.eos_token = eos_token
        self.unk_token = unk_token
        self.pad_token = pad_token
        self.legacy = legacy
        self.add_prefix_space = add_prefix_space
        self._strip_first_piece_prefix = bool(add_prefix_space)
        if proto is not None:
            self.set_proto(proto)

    # ------------------------------------------------------------- loading

    @classmethod
    def from_pretrained(cls, directory, **kwargs):
        """Builds the tokenizer from a checkpoint directory's own files.

        Reads `spiece.model` and, when present, `tokenizer_config.json`,
        `special_tokens_map.json` and `added_tokens.json`, merged as
        transformers does. Keyword arguments override the files.
        """
        init = hf_files.load_init_kwargs(directory, kwargs)
        known = {
            "extra_ids", "additional_special_tokens", "eos_token", "unk_token", "pad_token",
            "legacy", "add_prefix_space", "added_tokens_decoder", "model_max_length",
            "clean_up_tokenization_spaces", "nbest_size", "alpha", "name", "dtype",
        }
        args = {k: v for k, v in init.items() if k in known}
        return cls(proto=os.path.join(directory, SPIECE_FILE), **args)

    def set_proto(self, proto):
        """Loads the SentencePiece model and builds all lookup tables."""
        self._proto = sentencepiece_model.read_proto(proto)
        sentencepiece_model.parse_proto(self._proto)
        self._legacy_mode = True if self.legacy is None else bool(self.legacy)
        # `legacy=False` encodes with the model's dummy "▁" prefix turned off.
        encode_proto = self._proto if self._legacy_mode else sentencepiece_model.without_dummy_prefix(self._proto)
        model = sentencepiece_model.parse_proto(encode_proto)
        sp = sentencepiece_model.processor(encode_proto)
        base_tokens = [piece.piece for piece in model.pieces]
        self._sp_vocab_size = len(base_tokens)
        self._convert_token_to_id = sp.piece_to_id

        # Sentinels, as the reference's constructor registers them. Only the
        # sentinels it finds in `additional_special_tokens` (or makes itself
        # when that is None) get preset ids at the top of the vocabulary;
        # those appended after other tokens take the next free ids, in order.
        additional = None if self.additional_special_tokens is None else list(self.additional_special_tokens)
        if additional is not None:
            extra_tokens = [t for t in additional if "<extra_id_" in hf_files.token_content(t)]
            if not extra_tokens:
                additional += [f"<extra_id_{i}>" for i in range(self.extra_ids)]
            elif self.extra_ids > 0 and self.extra_ids != len(extra_tokens):
                raise ValueError(
                    f"Both extra_ids ({self.extra_ids}) and additional_special_tokens ({additional}) "
                    "are given; additional_special_tokens must then contain the extra_ids tokens."
                )
        else:
            extra_tokens = [f"<extra_id_{i}>" for i in range(self.extra_ids)]
            additional = extra_tokens
        preset = {
            self._sp_vocab_size - 1 + self.extra_ids - i: hf_files.AddedTokenSpec(
                f"<extra_id_{i}>", lstrip=True, rstrip=True, normalized=False, special=True
            )
            for i in range(len(extra_tokens))
        }

        def as_special(value):
            if value is None:
                return None
            if isinstance(value, str):
                return hf_files.AddedTokenSpec(value, special=True)
            return hf_files.AddedTokenSpec.from_value(value, special=True)

        resolved = hf_files.resolve_added_tokens(
            base_tokens,
            sp.piece_to_id,
            self._sp_vocab_size,
            {
                "eos_token": as_special(self.eos_token),
                "unk_token": as_special(self.unk_token),
                "pad_token": as_special(self.pad_token),
            },
            additional,
            preset_added_tokens=preset,
            added_tokens_decoder=self.added_tokens_decoder,
        )
        self._set_added_tokens(resolved)
        added_ids = resolved.added_token_ids
        self.eos_token_id = self._lookup_token_id(hf_files.token_content(self.eos_token))
        self.pad_token_id = self._lookup_token_id(hf_files.token_content(self.pad_token))
        self.unk_token_id = self._lookup_token_id(hf_files.token_content(self.unk_token))

        # SentencePiece ids -> final ids (a piece equal to an added token's
        # text takes the added id, as `convert_tokens_to_ids` does).
        piece_to_final = [added_ids.get(piece, i) for i, piece in enumerate(base_tokens)]
        self._piece_id_map = (
            None if piece_to_final == list(range(self._sp_vocab_size)) else tf.constant(piece_to_final, tf.int32)
        )
        meta_id = sp.piece_to_id(ops.META_SPACE)
        self._meta_space_id = piece_to_final[meta_id] if base_tokens[meta_id] == ops.META_SPACE else -1

        # Exact ids come from tensorflow-text's fast op fed with text it
        # scores like Python SentencePiece (see `ExactUnigramEncoder`). The
        # regular op (an older search whose near-ties can differ) serves
        # sampling and models the fast op cannot reproduce.
        self._use_fast_op = not self.sampling_enabled and sentencepiece_model.fast_tokenizer_is_exact(encode_proto)
        if self._use_fast_op:
            self._sentencepiece = ExactUnigramEncoder(encode_proto)
        else:
            self._sentencepiece = GraphSentencepiece(
                encode_proto, out_type=tf.int32, nbest_size=self.nbest_size, alpha=self.alpha
            )
        if not self._legacy_mode:
            unk = hf_files.token_content(self.unk_token)
            self._unk_text = unk
            self._unk_token_length = len(sp.encode(unk))

        # Decoding tables, one row per id.
        table_size = max([self._sp_vocab_size] + [i + 1 for i in resolved.added_tokens])
        kind_of_piece = sentencepiece_model.piece_kinds(model)
        token_strings, kinds, piece_kinds, stripped_kinds, skips = [], [], [], [], []
        special = set(resolved.all_special_tokens)
        for index in range(table_size):
            if index in resolved.added_tokens:
                token = resolved.added_tokens[index].content
            elif index < self._sp_vocab_size:
                token = base_tokens[index]
            else:
                token = None
            if token is None:
                kind = ops.TOKEN_INVALID
            elif token in resolved.legacy_added_tokens:
                kind = ops.TOKEN_LEGACY_ADDED
            elif token in special:
                kind = ops.TOKEN_SPECIAL
            else:
                kind = ops.TOKEN_PIECE
            token_strings.append(token or "")
            kinds.append(kind)
            if kind == ops.TOKEN_PIECE:
                piece_kinds.append(kind_of_piece.get(token, ops.PIECE_VERBATIM))
                stripped = token[1:] if token.startswith(ops.META_SPACE) else token
                stripped_kinds.append(kind_of_piece.get(stripped, ops.PIECE_VERBATIM))
            else:
                piece_kinds.append(ops.PIECE_VERBATIM)
                stripped_kinds.append(ops.PIECE_VERBATIM)
            skips.append(index in resolved.special_ids or token in special)
        self._token_strings_py = token_strings
        self._set_decoding_tables(
            token_strings,
            kinds,
            piece_kinds,
            stripped_kinds,
            skips,
            model.normalizer_spec,
            model.trainer_spec.unk_surface,
            out_of_range_index=None,  # the reference raises on unknown ids
        )
        self._vocabulary_ready = True

    # ------------------------------------------------------------ encoding

    def _prepare_texts(self, texts):
        if self._legacy_mode:
            return texts
        # legacy=False: "▁" in the text is a plain space, and a "▁" prefix
        # stands for the space SentencePiece would otherwise add.
        texts = tf.strings.regex_replace(texts, ops.META_SPACE, " ")
        if self.add_prefix_space:
            texts = tf.where(tf.strings.length(texts) > 0, tf.strings.join([ops.META_SPACE, texts]), texts)
        return texts

    def _sentencepiece_ids(self, texts):
        ids = self._sentencepiece.tokenize(texts)
        if self._piece_id_map is not None:
            ids = ids.with_values(tf.gather(self._piece_id_map, ids.values))
        return ids

    def _encode_text_segments(self, texts):
        if self._legacy_mode:
            return self._sentencepiece_ids(texts)
        # legacy=False: a segment starting with a space is encoded as
        # "<unk>" + segment and the "<unk>" pieces are dropped, so the
        # leading space survives as "▁" (the reference's trick); other
        # segments are encoded without any prefix.
        starts_with_space = ops.starts_with(texts, ops.META_SPACE) | ops.starts_with(texts, " ")
        inputs = tf.where(starts_with_space, tf.strings.join([self._unk_text, texts]), texts)
        ids = self._sentencepiece_ids(inputs)
        lengths = tf.cast(ids.row_lengths(), tf.int64)
        unk_length = tf.constant(self._unk_token_length, tf.int64)
        drop = tf.where(starts_with_space & (lengths >= unk_length), unk_length, tf.zeros_like(lengths))
        return ops.ragged_take_rows(ids, drop, lengths - drop)

    def _postprocess_segments(self, segment_splits, segment_ids, is_added, added_index):
        if self._legacy_mode or self._split_pattern is None:
            return segment_ids
        # legacy=False: when the text starts with a special token, the "▁"
        # prefix added in `_prepare_texts` ends up alone in front of it, and
        # the reference drops it.
        total = tf.shape(is_added, out_type=tf.int64)[0]
        lengths = segment_ids.row_lengths()

        def padded(values, fill):
            # One sentinel element at index `total` keeps gathers in range.
            return tf.concat([values, tf.fill([1], tf.constant(fill, values.dtype))], axis=0)

        num_segments = segment_splits[1:] - segment_splits[:-1]
        first = tf.where(num_segments >= 1, segment_splits[:-1], total)
        second = tf.where(num_segments >= 2, first + 1, total)
        first_length = tf.gather(padded(lengths, 0), first)
        first_value = tf.gather(
            padded(segment_ids.values, -1),
            tf.where(first_length > 0, tf.gather(padded(segment_ids.row_starts(), 0), first),
                     tf.size(segment_ids.values, out_type=tf.int64)),
        )
        second_index = tf.gather(padded(added_index, -1), second)
        second_is_special = tf.gather(padded(is_added, False), second) & tf.gather(
            padded(self._added_content_special, False),
            tf.where(second_index >= 0, second_index, tf.size(self._added_content_special)),
        )
        drop = (
            (num_segments >= 2)
            & tf.logical_not(tf.gather(padded(is_added, True), first))
            & tf.equal(first_length, 1)
            & tf.equal(first_value, self._meta_space_id)
            & second_is_special
        )
        dropped = tf.boolean_mask(first, drop)
        drop_segment = tf.scatter_nd(
            tf.reshape(dropped, [-1, 1]), tf.ones_like(dropped, dtype=tf.bool), tf.reshape(total, [1])
        )
        new_lengths = tf.where(drop_segment, tf.zeros_like(lengths), lengths)
        return ops.ragged_take_rows(segment_ids, tf.zeros_like(lengths), new_lengths)

    def _add_special_tokens(self, content_ids, is_target, batch_size=None):
        # "</s>" is appended unless the sequence already ends with it.
        lengths = content_ids.row_lengths()
        padded_values = tf.concat([content_ids.values, tf.constant([-1], tf.int32)], axis=0)
        last_index = tf.where(lengths > 0, content_ids.row_limits() - 1, tf.size(content_ids.values, out_type=tf.int64))
        needs_eos = tf.not_equal(tf.gather(padded_values, last_index), self.eos_token_id)
        eos_rows = tf.RaggedTensor.from_row_lengths(
            tf.fill([tf.reduce_sum(tf.cast(needs_eos, tf.int32))], tf.constant(self.eos_token_id, tf.int32)),
            tf.cast(needs_eos, tf.int64),
            validate=False,
        )
        return ops.concat_ragged_rows([content_ids, eos_rows])

    # -------------------------------------------------------------- extras

    @property
    def vocab_size(self):
        """SentencePiece vocabulary size (the reference's `vocab_size`)."""
        self._check_ready()
        return self._sp_vocab_size

    def get_sentinel_token_ids(self):
        """Ids of `<extra_id_0>`, `<extra_id_1>`, ... in that order."""
        self._check_ready()
        ids = []
        index = 0
        while f"<extra_id_{index}>" in self._added_token_ids:
            ids.append(self._added_token_ids[f"<extra_id_{index}>"])
            index += 1
        return ids

    # -------------------------------------------------------- save / config

    def save_pretrained(self, directory):
        """Writes `spiece.model`, `tokenizer_config.json`, `special_tokens_map.json`."""
        self._check_ready()
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, SPIECE_FILE), "wb") as f:
            f.write(self._proto)
        config = {
            "tokenizer_class": "T5Tokenizer",
            "eos_token": hf_files.token_to_json(self.eos_token),
            "unk_token": hf_files.token_to_json(self.unk_token),
            "pad_token": hf_files.token_to_json(self.pad_token),
            "extra_ids": self.extra_ids,
            "additional_special_tokens": self._additional_json(),
            "clean_up_tokenization_spaces": self.clean_up_tokenization_spaces,
            "sp_model_kwargs": {},
        }
        if self.legacy is not None:
            config["legacy"] = bool(self.legacy)
        if self.add_prefix_space is not True:
            config["add_prefix_space"] = self.add_prefix_space
        if self.model_max_length is not None:
            config["model_max_length"] = self.model_max_length
        if self.added_tokens_decoder:
            config["added_tokens_decoder"] = self._added_tokens_decoder_json()
        hf_files.write_json(os.path.join(directory, hf_files.TOKENIZER_CONFIG_FILE), config)
        special_map = {
            "eos_token": hf_files.token_to_json(self.eos_token),
            "unk_token": hf_files.token_to_json(self.unk_token),
            "pad_token": hf_files.token_to_json(self.pad_token),
        }
        if self.additional_special_tokens is not None:
            special_map["additional_special_tokens"] = self._additional_json()
        hf_files.write_json(os.path.join(directory, hf_files.SPECIAL_TOKENS_MAP_FILE), special_map)

    def load_assets(self, dir_path):
        self.set_proto(os.path.join(dir_path, SPIECE_FILE))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "proto": None,  # saved as an asset (spiece.model)
                "extra_ids": self.extra_ids,
                "eos_token": hf_files.token_to_json(self.eos_token),
                "unk_token": hf_files.token_to_json(self.unk_token),
                "pad_token": hf_files.token_to_json(self.pad_token),
                "legacy": self.legacy,
                "add_prefix_space": self.add_prefix_space,
            }
        )
        return config
