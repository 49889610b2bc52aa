"""Load-time helpers around a SentencePiece model proto, and the graph ops.

Python `sentencepiece` is used here only while loading (reading pieces,
normalizing single characters, building a derived proto); tokenization runs
with tensorflow-text ops.
"""

import functools
import io
import os
import tempfile
import unicodedata

import sentencepiece
import tensorflow as tf
import tensorflow_text as tf_text
from sentencepiece import sentencepiece_model_pb2

from tfmodels.tokenizers import text_graph_ops as ops

_PIECE = sentencepiece_model_pb2.ModelProto.SentencePiece


def read_proto(proto):
    """Serialized model bytes from bytes or a file path."""
    if isinstance(proto, (bytes, bytearray)):
        return bytes(proto)
    if isinstance(proto, (str, os.PathLike)):
        with open(proto, "rb") as f:
            return f.read()
    raise TypeError(f"proto must be bytes or a path to a SentencePiece model, got {type(proto).__name__}.")


def parse_proto(proto_bytes):
    model = sentencepiece_model_pb2.ModelProto.FromString(proto_bytes)
    if model.trainer_spec.byte_fallback or any(p.type == _PIECE.BYTE for p in model.pieces):
        raise NotImplementedError("SentencePiece models with byte fallback are not supported.")
    if model.denormalizer_spec.precompiled_charsmap or model.denormalizer_spec.normalization_rule_tsv:
        raise NotImplementedError("SentencePiece models with a denormalizer are not supported.")
    return model


def without_dummy_prefix(proto_bytes):
    """The same model with `add_dummy_prefix=False` (T5's `legacy=False`)."""
    model = sentencepiece_model_pb2.ModelProto.FromString(proto_bytes)
    model.normalizer_spec.add_dummy_prefix = False
    return model.SerializeToString()


def processor(proto_bytes):
    return sentencepiece.SentencePieceProcessor(model_proto=proto_bytes)


def piece_kind(sp, text):
    """How `SentencePieceProcessor.Decode` treats the piece string `text`."""
    piece_id = sp.piece_to_id(text)
    if sp.id_to_piece(piece_id) != text:
        return ops.PIECE_VERBATIM
    if sp.is_control(piece_id):
        return ops.PIECE_CONTROL
    if sp.is_unknown(piece_id):
        return ops.PIECE_UNKNOWN
    return ops.PIECE_NORMAL


# --------------------------------------------------------------------------
# Exact unigram encoding with tensorflow-text's fast op.
#
# Python SentencePiece (>= 0.2, what transformers uses) finds the best
# segmentation with `EncodeOptimized`: float32 path scores, the earliest start
# winning exact ties. `tensorflow_text.FastSentencepieceTokenizer` runs the
# same search with the same arithmetic, except that (a) it charges the
# unknown-character penalty once per *byte* instead of once per character, and
# (b) with `add_dummy_prefix=False` it keeps a leading "▁" for leading
# whitespace. Either changes running path scores, and near-ties further on
# (e.g. "555" as "5"+"55" vs "55"+"5") can then resolve differently. The
# regular tf-text op uses an older search whose near-ties also differ.
#
# The tokenizer therefore sends text through the fast op only in a form for
# which both agree: text made of "inert" characters (known single-character
# pieces that normalization leaves alone and that never compose with the
# character before them) goes as is; any other text is first
# normalized (the regular op's pieces, joined, are the normalized text), each
# unknown character is replaced by one 0xFF byte (unknown, one byte), and the
# result is encoded by a copy of the model whose normalizer does nothing.
# --------------------------------------------------------------------------

_BUILTIN_NORMALIZERS = ("nmt_nfkc", "nfkc", "nmt_nfkc_cf", "nfkc_cf", "identity")
UNKNOWN_BYTE = b"\xff"


def _all_code_points():
    return (c for c in range(0x110000) if not 0xD800 <= c < 0xE000)


def _may_normalize(char):
    """Characters a built-in normalizer might change (NFKC, controls, spaces)."""
    category = unicodedata.category(char)
    if category in ("Cn", "Co"):  # unassigned / private use: never mapped
        return False
    return (
        char.isspace()
        or category[0] in "CZ"
        or char in "\ufffd\u2581"
        or unicodedata.normalize("NFKC", char) != char
    )


@functools.lru_cache(maxsize=1)
def _normalization_candidates():
    return tuple(chr(c) for c in _all_code_points() if _may_normalize(chr(c)))


@functools.lru_cache(maxsize=1)
def _combining_chars():
    """Characters that can join the character before them in normalization.

    Those that appear after the first position of a canonical decomposition
    (combining marks, Indic vowel-sign parts, Hangul vowel/final jamo): NFC
    composes such a character with its predecessor ("e" + U+0301 -> "é").
    Text without them cannot change by composition.
    """
    chars = set()
    for code in _all_code_points():
        decomposed = unicodedata.normalize("NFD", chr(code))
        chars.update(decomposed[1:])
    chars.update(chr(c) for c in _all_code_points() if unicodedata.combining(chr(c)))
    for low, high in ((0x1160, 0x11FF), (0xD7B0, 0xD7FF)):  # Hangul vowel/final jamo
        chars.update(chr(c) for c in range(low, high + 1))
    return frozenset(chars)


@functools.lru_cache(maxsize=8)
def fast_encoding_patterns(proto_bytes):
    """RE2 patterns for the fast path: `(inert_text, unknown_char)`.

    `inert_text` fully matches strings the fast op encodes exactly as given;
    `unknown_char` matches characters of *normalized* text that have no
    piece of their own.
    """
    model = parse_proto(proto_bytes)
    known = {p.piece for p in model.pieces if p.type == _PIECE.NORMAL and len(p.piece) == 1}
    spec = model.normalizer_spec
    if spec.name in _BUILTIN_NORMALIZERS and not spec.normalization_rule_tsv:
        candidates = _normalization_candidates()
        normalizer = processor(without_dummy_prefix(proto_bytes))
        changed = {
            char
            for char, text in zip(candidates, normalizer.normalize(["@" + c + "@" for c in candidates]))
            if text[1:-1] != char
        }
        inert = {c for c in known if c not in changed and c not in _combining_chars() and not c.isspace()}
        inert.discard(ops.META_SPACE)
    else:
        inert = set()  # custom rules: normalize everything first
    inert_class = ops.re2_char_class(inert) if inert else None
    if inert_class is None:
        inert_text = "(?:)"
    elif spec.add_dummy_prefix:
        inert_text = f"(?:{inert_class}| )*"
    else:
        # Without a dummy prefix the fast op mishandles leading whitespace.
        inert_text = f"(?:{inert_class}(?:{inert_class}| )*)?"
    unknown_char = "[^" + ops.re2_char_class(known | {" "})[1:]
    return inert_text, unknown_char


@functools.lru_cache(maxsize=1)
def _inert_charsmap():
    """A precompiled normalization map whose only rule (U+FDD0 -> U+FDD1, a
    non-character) never applies; built with SentencePiece's own trainer."""
    with tempfile.TemporaryDirectory() as directory:
        rules = os.path.join(directory, "rules.tsv")
        with open(rules, "w", encoding="utf-8") as f:
            f.write("FDD0\tFDD1\n")
        model = io.BytesIO()
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(["ab", "ba", "abc"]),
            model_writer=model,
            vocab_size=8,
            model_type="char",
            normalization_rule_tsv=rules,
            minloglevel=3,
        )
    return sentencepiece_model_pb2.ModelProto.FromString(model.getvalue()).normalizer_spec.precompiled_charsmap


def without_normalization(proto_bytes):
    """The same model with a normalization map that changes nothing.

    Whitespace handling (dummy prefix, collapsing, "▁" escaping) is kept.
    """
    model = sentencepiece_model_pb2.ModelProto.FromString(proto_bytes)
    model.normalizer_spec.precompiled_charsmap = _inert_charsmap()
    model.normalizer_spec.name = "inert"
    return model.SerializeToString()


def fast_tokenizer_is_exact(proto_bytes):
    """Whether the fast op can reproduce Python SentencePiece for this model.

    It only implements unigram models, scores user-defined pieces
    differently and rejects unused pieces.
    """
    model = parse_proto(proto_bytes)
    if model.trainer_spec.model_type != sentencepiece_model_pb2.TrainerSpec.UNIGRAM:
        return False
    return not any(p.type in (_PIECE.USER_DEFINED, _PIECE.UNUSED) for p in model.pieces)


class GraphSentencepiece:
    """tensorflow-text's `SentencepieceTokenizer`, created inside each graph.

    The tf-text op keeps the loaded model in a kernel-owned resource. Created
    eagerly, that resource disappears whenever the eager kernel cache is
    cleared, e.g. by `tf.random.set_seed` or `keras.utils.set_random_seed`
    ("Resource ... SentencepieceResource does not exist"). Building the op
    inside the graph that uses it (a `tf.function`, a `tf.data` map, an
    exported SavedModel function) ties the resource to that graph instead,
    and needs no resource tracking for export. Eager calls go through one
    internal `tf.function`.

    A plain Python object on purpose: Keras/`tf.Module` attribute tracking
    ignores it, so the internal function is not exported with the layer.
    """

    def __init__(self, proto_bytes, out_type, nbest_size=0, alpha=1.0):
        self._proto = proto_bytes
        self._out_type = out_type
        self._nbest_size = nbest_size
        self._alpha = alpha
        self._eager_fn = tf.function(
            self._tokenize_in_graph, input_signature=[tf.TensorSpec([None], tf.string)], autograph=False
        )

    def _tokenize_in_graph(self, texts):
        tokenizer = tf_text.SentencepieceTokenizer(
            self._proto, out_type=self._out_type, nbest_size=self._nbest_size, alpha=self._alpha
        )
        return tokenizer.tokenize(texts)

    def tokenize(self, texts):
        """[n] strings -> ragged [n, (pieces)]."""
        if tf.executing_eagerly():
            return self._eager_fn(texts)
        return self._tokenize_in_graph(texts)


class ExactUnigramEncoder:
    """Unigram ids identical to Python SentencePiece, from tf-text ops.

    See the comment block above `fast_encoding_patterns`. Also a plain
    Python object (not tracked); the fast op keeps its model in a constant.
    """

    def __init__(self, proto_bytes):
        model = parse_proto(proto_bytes)
        self._adds_dummy_prefix = model.normalizer_spec.add_dummy_prefix
        self._inert_text, self._unknown_char = fast_encoding_patterns(proto_bytes)
        self._normalizer = GraphSentencepiece(proto_bytes, out_type=tf.string)
        self._fast = tf_text.FastSentencepieceTokenizer(without_normalization(proto_bytes))

    def tokenize(self, texts):
        """[n] strings -> ragged [n, (ids)] (SentencePiece ids)."""
        inert = tf.strings.regex_full_match(texts, self._inert_text)
        positions = tf.range(tf.size(texts))
        other = tf.boolean_mask(positions, tf.logical_not(inert))
        # The regular op's pieces spell the normalized text (with "▁").
        normalized = tf.strings.reduce_join(self._normalizer.tokenize(tf.gather(texts, other)), axis=-1)
        normalized = tf.strings.regex_replace(normalized, ops.META_SPACE, " ")
        if self._adds_dummy_prefix:
            normalized = tf.strings.regex_replace(normalized, "^ ", "")
        normalized = tf.strings.regex_replace(normalized, self._unknown_char, UNKNOWN_BYTE)
        prepared = tf.dynamic_stitch(
            [tf.boolean_mask(positions, inert), other], [tf.boolean_mask(texts, inert), normalized]
        )
        prepared = tf.reshape(prepared, tf.shape(texts))
        return self._fast.tokenize(prepared)
