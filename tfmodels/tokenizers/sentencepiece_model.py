"""Load-time helpers around a SentencePiece model proto (Python only).

Python `sentencepiece` is used here only while loading: reading pieces,
normalizing single characters, building derived protos. Tokenization runs
with tensorflow-text ops (`GraphSentencepiece`, `ExactUnigramEncoder`).
"""

import functools
import io
import os
import tempfile
import unicodedata

import sentencepiece
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


@functools.lru_cache(maxsize=8)
def parse_proto(proto_bytes):
    """Parsed (and checked) model proto. Cached: callers must not modify it."""
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


@functools.lru_cache(maxsize=8)
def processor(proto_bytes):
    """A Python `SentencePieceProcessor` (load time only; cached)."""
    return sentencepiece.SentencePieceProcessor(model_proto=proto_bytes)


def piece_kinds(model):
    """Dict piece -> how `SentencePieceProcessor.Decode` treats it.

    Strings that are not pieces decode verbatim (`PIECE_VERBATIM`).
    """
    kinds = {}
    for piece in model.pieces:
        if piece.type == _PIECE.CONTROL:
            kinds[piece.piece] = ops.PIECE_CONTROL
        elif piece.type == _PIECE.UNKNOWN:
            kinds[piece.piece] = ops.PIECE_UNKNOWN
        else:
            kinds[piece.piece] = ops.PIECE_NORMAL
    return kinds


# --------------------------------------------------------------------------
# Helpers of `ExactUnigramEncoder` (see its docstring): which text the fast
# tf-text op encodes exactly as Python SentencePiece does, and a model copy
# whose normalization map changes nothing.
# --------------------------------------------------------------------------

_BUILTIN_NORMALIZERS = ("nmt_nfkc", "nfkc", "nmt_nfkc_cf", "nfkc_cf", "identity")
UNKNOWN_BYTE = b"\xff"


def _all_code_points():
    return (c for c in range(0x110000) if not 0xD800 <= c < 0xE000)


def _may_normalize(char):
    """Characters a built-in normalizer might change (NFKC, controls, spaces).

    A character without a decomposition mapping is its own NFKC form, so
    only those with one, plus control/format/space characters, can change.
    """
    category = unicodedata.category(char)
    if category in ("Cn", "Co"):  # unassigned / private use: never mapped
        return False
    return bool(
        unicodedata.decomposition(char) or char.isspace() or category[0] in "CZ" or char in "\ufffd\u2581"
    )


@functools.lru_cache(maxsize=1)
def _normalization_candidates():
    return tuple(chr(c) for c in _all_code_points() if _may_normalize(chr(c)))


@functools.lru_cache(maxsize=1)
def _combining_chars():
    """Characters that can join the character before them in normalization.

    Those after the first position of a canonical decomposition (combining
    marks, Indic vowel-sign parts) and Hangul vowel/final jamo: NFC composes
    such a character with its predecessor ("e" + U+0301 -> "é"). Text
    without them cannot change by composition.
    """
    chars = set()
    for code in _all_code_points():
        char = chr(code)
        mapping = unicodedata.decomposition(char)
        if mapping and not mapping.startswith("<"):  # canonical
            chars.update(chr(int(part, 16)) for part in mapping.split()[1:])
        if unicodedata.combining(char):
            chars.add(char)
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
        normalized = processor(proto_bytes).normalize(["@" + c + "@" for c in candidates])
        prefix = ops.META_SPACE if spec.add_dummy_prefix else ""
        changed = {char for char, text in zip(candidates, normalized) if text != prefix + "@" + char + "@"}
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
