"""In-graph M2M100 tokenizer."""

import os

import keras
import numpy as np
import tensorflow as tf

from converters.json_files import read_json_object
from tfmodels.tokenizers import hf_tokenizer_files as hf_files
from tfmodels.tokenizers import sentencepiece_model
from tfmodels.tokenizers import text_graph_ops as ops
from tfmodels.tokenizers.graph_sentencepiece import GraphSentencepiece
from tfmodels.tokenizers.m2m100_language_codes import M2M100_LANGUAGE_CODES
from tfmodels.tokenizers.sentencepiece_tokenizer_base import SentencePieceTokenizerBase

SPM_FILE = "sentencepiece.bpe.model"
VOCAB_FILE = "vocab.json"


@keras.saving.register_keras_serializable(package="tfmodels")
class M2M100Tokenizer(SentencePieceTokenizerBase):
    """M2M100 tokenizer (SentencePiece pieces + fairseq vocabulary) as a Keras layer.

    Produces exactly the ids of transformers' `M2M100Tokenizer` (4.57):
    SentencePiece splits text into *pieces*, the pieces are mapped to ids with
    `vocab.json` (pieces missing from it become `<unk>`), and a sequence is
    `[__src__] pieces </s>` (targets: `[__tgt__] pieces </s>`). Language
    token `__xx__` has id `len(vocab.json) + index of xx` in the code list
    (`language_codes="m2m100"`: 100 codes, `"wmt21"`: 8).

    The language can be set at construction, per call, or per example: pass
    `src_lang`/`tgt_lang` as a Python string or as a `tf.string` tensor (a
    scalar, or one code per example for mixed-language batches). Unknown codes
    raise an error naming the code, also inside a graph
    (`tf.errors.InvalidArgumentError`).

    Args:
        proto: serialized SentencePiece model or path to
            `sentencepiece.bpe.model` (None when rebuilt from a config).
        vocabulary: dict piece -> id, or path to `vocab.json`.
        src_lang, tgt_lang: default language codes (`src_lang` defaults to
            "en", as in the reference).
        language_codes: `"m2m100"` or `"wmt21"`.
        num_madeup_words: kept for the reference's config (model vocabulary
            padding; does not change tokenization).
        bos_token, eos_token, sep_token, pad_token, unk_token: special tokens.
        additional_special_tokens: as in the reference (checkpoints list the
            `__xx__` tokens here, which makes them split out of raw text).
        added_tokens_decoder: `{id: token dict}` from a recent checkpoint.
        model_max_length, clean_up_tokenization_spaces: as in the reference.
        nbest_size, alpha: subword regularisation, off by default. For this
            BPE model, any `nbest_size` other than 0/1 turns on BPE-dropout
            with merge-dropout probability `alpha`.

    Example:

    >>> from tfmodels.tokenizers import M2M100Tokenizer
    >>> tokenizer = M2M100Tokenizer.from_pretrained(
    ...     "tests/data/m2m100_tokenizer", src_lang="en", tgt_lang="fr")
    >>> batch = tokenizer(["Hello world!"], text_target=["Bonjour le monde !"])
    >>> sorted(batch)
    ['attention_mask', 'input_ids', 'labels']
    >>> int(batch["input_ids"][0, 0]) == tokenizer.get_lang_id("en")
    True
    >>> mixed = tokenizer.tokenize(["Hallo", "Привет"], src_lang=["de", "ru"])
    >>> [int(row[0]) for row in mixed] == [tokenizer.get_lang_id(c) for c in ("de", "ru")]
    True
    """

    num_special_tokens_to_add = 2

    def __init__(
        self,
        proto=None,
        vocabulary=None,
        src_lang=None,
        tgt_lang=None,
        language_codes="m2m100",
        num_madeup_words=8,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        additional_special_tokens=None,
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
        if language_codes not in M2M100_LANGUAGE_CODES:
            raise ValueError(
                f"language_codes must be one of {sorted(M2M100_LANGUAGE_CODES)}, got {language_codes!r}."
            )
        self.language_codes = language_codes
        self.num_madeup_words = num_madeup_words
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.sep_token = sep_token
        self.pad_token = pad_token
        self.unk_token = unk_token
        self._codes = list(M2M100_LANGUAGE_CODES[language_codes])
        self._src_lang = None
        self._tgt_lang = None
        if proto is not None:
            self.set_vocabulary(proto, vocabulary)
        self.src_lang = "en" if src_lang is None else src_lang
        self.tgt_lang = tgt_lang

    # ------------------------------------------------------------- loading

    @classmethod
    def from_pretrained(cls, directory, **kwargs):
        """Builds the tokenizer from `sentencepiece.bpe.model` + `vocab.json` (+ configs).

        Keyword arguments (e.g. `src_lang="fr"`) override the files.
        """
        init = hf_files.load_init_kwargs(directory, kwargs)
        known = {
            "src_lang", "tgt_lang", "language_codes", "num_madeup_words", "bos_token", "eos_token",
            "sep_token", "pad_token", "unk_token", "additional_special_tokens", "added_tokens_decoder",
            "model_max_length", "clean_up_tokenization_spaces", "nbest_size", "alpha", "name", "dtype",
        }
        args = {k: v for k, v in init.items() if k in known}
        return cls(
            proto=os.path.join(directory, SPM_FILE),
            vocabulary=os.path.join(directory, VOCAB_FILE),
            **args,
        )

    def set_vocabulary(self, proto, vocabulary):
        """Loads the SentencePiece model and the piece -> id vocabulary."""
        if vocabulary is None:
            raise ValueError("M2M100Tokenizer needs `vocabulary` (vocab.json or a dict) with `proto`.")
        self._proto = sentencepiece_model.read_proto(proto)
        model = sentencepiece_model.parse_proto(self._proto)
        if isinstance(vocabulary, (str, os.PathLike)):
            vocabulary = read_json_object(vocabulary)
        self._encoder = {str(k): int(v) for k, v in vocabulary.items()}
        decoder = {v: k for k, v in self._encoder.items()}
        encoder_size = len(self._encoder)
        unk = hf_files.token_content(self.unk_token)
        if unk not in self._encoder:
            raise ValueError(f"The vocabulary has no unknown token {unk!r}.")
        self._lang_code_to_id = {code: encoder_size + i for i, code in enumerate(self._codes)}
        lang_token_to_id = {f"__{code}__": i for code, i in self._lang_code_to_id.items()}
        id_to_lang_token = {i: token for token, i in lang_token_to_id.items()}

        def convert_id_to_token(index):
            if index in id_to_lang_token:
                return id_to_lang_token[index]
            return decoder.get(index, unk)

        def convert_token_to_id(token):
            if token in lang_token_to_id:
                return lang_token_to_id[token]
            return self._encoder.get(token, self._encoder[unk])

        self._convert_token_to_id = convert_token_to_id
        base_tokens = [convert_id_to_token(i) for i in range(encoder_size)]
        resolved = hf_files.resolve_added_tokens(
            base_tokens,
            convert_token_to_id,
            encoder_size,
            {
                "bos_token": self.bos_token,
                "eos_token": self.eos_token,
                "unk_token": self.unk_token,
                "sep_token": self.sep_token,
                "pad_token": self.pad_token,
            },
            self.additional_special_tokens,
            added_tokens_decoder=self.added_tokens_decoder,
        )
        self._set_added_tokens(resolved)
        self.eos_token_id = self._lookup_token_id(hf_files.token_content(self.eos_token))
        self.pad_token_id = self._lookup_token_id(hf_files.token_content(self.pad_token))
        self.unk_token_id = self._lookup_token_id(unk)

        # Encoding: piece -> id with the reference's precedence (added
        # tokens, then language tokens, then vocab.json; else <unk>).
        piece_to_id = dict(self._encoder)
        piece_to_id.update(lang_token_to_id)
        piece_to_id.update(resolved.added_token_ids)
        self._piece_table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(np.array(list(piece_to_id), dtype=object), tf.string),
                tf.constant(list(piece_to_id.values()), tf.int32),
            ),
            default_value=self._encoder[unk],
        )
        # tf-text's regular op (its fast op does not implement BPE).
        self._sentencepiece = GraphSentencepiece(
            self._proto,
            out_type=tf.string,
            nbest_size=self.nbest_size if self.sampling_enabled else 0,
            alpha=self.alpha,
        )
        self._lang_table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(self._codes, tf.string),
                tf.constant([self._lang_code_to_id[c] for c in self._codes], tf.int32),
            ),
            default_value=-1,
        )

        # Decoding tables; ids outside them decode as "<unk>" (the reference's
        # `decoder.get(id, unk_token)`), stored in an extra last row.
        table_size = max(
            [encoder_size + len(self._codes), max(decoder, default=-1) + 1]
            + [i + 1 for i in resolved.added_tokens]
        )
        special = set(resolved.all_special_tokens)
        kind_of_piece = sentencepiece_model.piece_kinds(model)
        token_strings, kinds, piece_kinds, skips = [], [], [], []
        for index in list(range(table_size)) + [None]:
            if index is not None and index in resolved.added_tokens:
                token = resolved.added_tokens[index].content
            else:
                token = convert_id_to_token(index) if index is not None else unk
            if token in resolved.legacy_added_tokens:
                kind = ops.TOKEN_LEGACY_ADDED
            elif token in special:
                kind = ops.TOKEN_SPECIAL
            else:
                kind = ops.TOKEN_PIECE
            token_strings.append(token)
            kinds.append(kind)
            piece_kinds.append(kind_of_piece.get(token, ops.PIECE_VERBATIM) if kind == ops.TOKEN_PIECE
                               else ops.PIECE_VERBATIM)
            skips.append((index in resolved.special_ids) or token in special)
        self._token_strings_py = token_strings[:-1]
        self._set_decoding_tables(
            token_strings,
            kinds,
            piece_kinds,
            piece_kinds,
            skips,
            model.normalizer_spec,
            model.trainer_spec.unk_surface,
            out_of_range_index=table_size,
        )
        self._vocabulary_ready = True

    # ----------------------------------------------------------- languages

    @property
    def src_lang(self):
        return self._src_lang

    @src_lang.setter
    def src_lang(self, code):
        self._check_code(code, "src_lang")
        self._src_lang = code

    @property
    def tgt_lang(self):
        return self._tgt_lang

    @tgt_lang.setter
    def tgt_lang(self, code):
        if code is not None:
            self._check_code(code, "tgt_lang")
        self._tgt_lang = code

    @property
    def lang_codes(self):
        """The valid language codes, in id order."""
        return list(self._codes)

    def _check_code(self, code, argument):
        if code not in self._codes:
            raise ValueError(
                f"Unknown language code {code!r} for {argument}. Valid codes "
                f"({self.language_codes}): {', '.join(self._codes)}"
            )

    def get_lang_token(self, lang):
        """`"fr"` -> `"__fr__"`."""
        self._check_code(lang, "lang")
        return f"__{lang}__"

    def get_lang_id(self, lang):
        """Id of a language code's token, e.g. `get_lang_id("fr")`."""
        return self._lang_id(lang, "lang")

    def _lang_id(self, lang, argument):
        """`get_lang_id`, with errors naming the caller's `argument`."""
        self._check_code(lang, argument)
        self._check_ready()
        return self._lang_code_to_id[lang]

    def _language_ids(self, lang, batch_size, argument):
        """int32 [batch] language token ids from a str, list or string tensor."""
        if lang is None:
            lang = self._src_lang if argument == "src_lang" else self._tgt_lang
            if lang is None:
                raise ValueError(f"`{argument}` is required (set it at construction or pass it in the call).")
        if isinstance(lang, bytes):
            lang = lang.decode("utf-8")
        if isinstance(lang, str):
            return tf.fill([batch_size], tf.constant(self._lang_id(lang, argument), tf.int32))
        if isinstance(lang, (list, tuple)):
            for code in lang:
                code = code.decode("utf-8") if isinstance(code, bytes) else code
                self._check_code(code, argument)
            if not lang:  # an empty batch's codes: no dtype to infer
                lang = tf.constant([], tf.string)
        codes = tf.convert_to_tensor(lang)
        if codes.dtype != tf.string:
            raise TypeError(f"`{argument}` must be a string or a tf.string tensor, got dtype {codes.dtype.name}.")
        if codes.shape.rank == 0:
            codes = tf.fill([batch_size], codes)
        elif codes.shape.rank != 1:
            raise ValueError(f"`{argument}` must be a scalar or one code per example, got shape {codes.shape}.")
        ids = self._lang_table.lookup(codes)
        valid = ids >= 0
        # No quotes around the codes: the runtime escapes them in messages.
        unknown = tf.strings.reduce_join(tf.boolean_mask(codes, tf.logical_not(valid)), separator=", ")
        message = tf.strings.join(
            [
                f"Unknown language code(s) for {argument}: ",
                unknown,
                f". Valid codes ({self.language_codes}): {', '.join(self._codes)}",
            ]
        )
        checks = [
            tf.debugging.Assert(tf.reduce_all(valid), [message], summarize=1),
            tf.debugging.assert_equal(
                tf.size(codes),
                batch_size,
                message=f"`{argument}` needs one language code per example (or a single code).",
            ),
        ]
        with tf.control_dependencies(checks):
            return tf.identity(ids)

    # ------------------------------------------------------------ encoding

    def _encode_text_segments(self, texts):
        pieces = self._sentencepiece.tokenize(texts)
        return pieces.with_values(self._piece_table.lookup(pieces.values))

    def _add_special_tokens(self, content_ids, is_target, batch_size=None, src_lang=None, tgt_lang=None):
        if batch_size is None:
            batch_size = tf.cast(content_ids.nrows(), tf.int32)
        if is_target:
            lang_ids = self._language_ids(tgt_lang, batch_size, "tgt_lang")
        else:
            lang_ids = self._language_ids(src_lang, batch_size, "src_lang")
        eos = tf.fill(tf.shape(lang_ids), tf.constant(self.eos_token_id, tf.int32))
        return ops.concat_ragged_rows([ops.ragged_column(lang_ids), content_ids, ops.ragged_column(eos)])

    def _split_call_kwargs(self, kwargs):
        # Only this class's `call` gets here, with exactly these two.
        return {"src_lang": kwargs["src_lang"]}, {"tgt_lang": kwargs["tgt_lang"]}

    @tf.autograph.experimental.do_not_convert
    def call(
        self,
        inputs=None,
        text_target=None,
        padding="longest",
        truncation=None,
        max_length=None,
        pad_to_multiple_of=None,
        src_lang=None,
        tgt_lang=None,
    ):
        """The base class's `call`, with `src_lang` / `tgt_lang` as in the class docstring.

        They are named here so that Keras takes each as its own argument: one
        can be a tensor (a language per example in `tf.data`) and the other a
        Python string.
        """
        return super().call(
            inputs, text_target, padding, truncation, max_length, pad_to_multiple_of,
            src_lang=src_lang, tgt_lang=tgt_lang,
        )

    @tf.autograph.experimental.do_not_convert
    def tokenize(self, inputs, src_lang=None):
        """Ids `[__src__] pieces </s>`; `src_lang` as in the class docstring."""
        return super().tokenize(inputs, src_lang=src_lang)

    @property
    def vocab_size(self):
        """Size of `vocab.json` (the reference's `vocab_size`)."""
        self._check_ready()
        return len(self._encoder)

    # -------------------------------------------------------- save / config

    def save_pretrained(self, directory):
        """Writes `sentencepiece.bpe.model`, `vocab.json` and the JSON configs."""
        self._check_ready()
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, SPM_FILE), "wb") as f:
            f.write(self._proto)
        hf_files.write_json(os.path.join(directory, VOCAB_FILE), self._encoder)
        specials = {
            "bos_token": hf_files.token_to_json(self.bos_token),
            "eos_token": hf_files.token_to_json(self.eos_token),
            "sep_token": hf_files.token_to_json(self.sep_token),
            "unk_token": hf_files.token_to_json(self.unk_token),
            "pad_token": hf_files.token_to_json(self.pad_token),
        }
        config = {
            "tokenizer_class": "M2M100Tokenizer",
            "src_lang": self._src_lang,
            "tgt_lang": self._tgt_lang,
            **specials,
            "language_codes": self.language_codes,
            "num_madeup_words": self.num_madeup_words,
            "clean_up_tokenization_spaces": self.clean_up_tokenization_spaces,
            "sp_model_kwargs": {},
        }
        if self.model_max_length is not None:
            config["model_max_length"] = self.model_max_length
        if self.added_tokens_decoder:
            config["added_tokens_decoder"] = self._added_tokens_decoder_json()
        if self.additional_special_tokens is not None:
            specials["additional_special_tokens"] = self._additional_json()
        hf_files.write_json(os.path.join(directory, hf_files.TOKENIZER_CONFIG_FILE), config)
        hf_files.write_json(os.path.join(directory, hf_files.SPECIAL_TOKENS_MAP_FILE), specials)

    def load_assets(self, dir_path):
        self.set_vocabulary(os.path.join(dir_path, SPM_FILE), os.path.join(dir_path, VOCAB_FILE))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "proto": None,  # saved as assets (sentencepiece.bpe.model, vocab.json)
                "vocabulary": None,
                "src_lang": self._src_lang,
                "tgt_lang": self._tgt_lang,
                "language_codes": self.language_codes,
                "num_madeup_words": self.num_madeup_words,
                "bos_token": hf_files.token_to_json(self.bos_token),
                "eos_token": hf_files.token_to_json(self.eos_token),
                "sep_token": hf_files.token_to_json(self.sep_token),
                "pad_token": hf_files.token_to_json(self.pad_token),
                "unk_token": hf_files.token_to_json(self.unk_token),
            }
        )
        return config
