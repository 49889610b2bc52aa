"""Small TensorFlow string/ragged helpers shared by the tokenizers.

Everything here runs in the graph (TensorFlow ops only) except the functions
that build regular expressions or lookup arrays from Python data at load time.
"""

import sys

import tensorflow as tf

META_SPACE = "\u2581"  # SentencePiece's "▁" whitespace symbol.

# Per-id kinds used by the detokenizer.
TOKEN_PIECE = 0  # an ordinary SentencePiece piece, decoded by SentencePiece rules
TOKEN_SPECIAL = 1  # a special token, written out as its text
TOKEN_LEGACY_ADDED = 2  # an added token decoded as its own space-joined chunk
TOKEN_INVALID = 3  # an id the reference cannot decode (raises)

# How SentencePiece decodes a piece string (`SentencePieceProcessor.Decode`).
PIECE_NORMAL = 0  # "▁" -> " ", leading "▁" dropped at the start of the text
PIECE_CONTROL = 1  # <s>, </s>, ...: decodes to ""
PIECE_UNKNOWN = 2  # the <unk> piece itself: decodes to the "unk surface"
PIECE_VERBATIM = 3  # a string that is not a piece: copied as it is


def _python_whitespace_chars():
    """Every code point for which Python's `str.isspace()` is true.

    The reference strips added-token neighbours with `str.lstrip/rstrip`, whose
    notion of whitespace is wider than RE2's `\\s`.
    """
    return [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()]


def re2_char(char):
    """One character as an RE2 literal."""
    if char.isalnum() and ord(char) < 128:
        return char
    return "\\x{%x}" % ord(char)


def re2_literal(text):
    """A string as an RE2 literal (every non-alphanumeric char escaped)."""
    return "".join(re2_char(c) for c in text)


def re2_char_class(chars):
    """An RE2 character class matching exactly `chars`."""
    codes = sorted({ord(c) for c in chars})
    ranges = []
    for code in codes:
        if ranges and code == ranges[-1][1] + 1:
            ranges[-1][1] = code
        else:
            ranges.append([code, code])
    parts = []
    for low, high in ranges:
        if low == high:
            parts.append("\\x{%x}" % low)
        else:
            parts.append("\\x{%x}-\\x{%x}" % (low, high))
    return "[" + "".join(parts) + "]"


PYTHON_WHITESPACE_CLASS = re2_char_class(_python_whitespace_chars())


def python_strip(strings):
    """`str.strip()` with Python's definition of whitespace."""
    ws = PYTHON_WHITESPACE_CLASS
    return tf.strings.regex_replace(strings, f"^{ws}+|{ws}+$", "")


def starts_with(strings, prefix):
    """Elementwise `str.startswith` on a string tensor (byte prefix test)."""
    prefix_bytes = len(prefix.encode("utf-8"))
    return tf.equal(tf.strings.substr(strings, 0, prefix_bytes), prefix)


def ragged_take_rows(ragged, starts, lengths):
    """Row `i` of the result is `ragged[i][starts[i]:starts[i] + lengths[i]]`.

    `starts`/`lengths` must already be clipped to each row.
    """
    starts = tf.cast(starts, ragged.row_splits.dtype)
    lengths = tf.cast(lengths, ragged.row_splits.dtype)
    begin = ragged.row_starts() + starts
    indices = tf.ragged.range(begin, begin + lengths)
    values = tf.gather(ragged.values, indices.values)
    return tf.RaggedTensor.from_row_lengths(values, lengths, validate=False)


def exclusive_cumsum_within_segments(values, segment_starts):
    """Exclusive cumulative sum of `values` restarting at each segment start.

    Args:
        values: int32 [n].
        segment_starts: bool [n], true on the first element of every segment.
    """
    inclusive = tf.cumsum(values)
    exclusive = inclusive - values
    segment_ids = tf.cumsum(tf.cast(segment_starts, tf.int32)) - 1
    base = tf.gather(tf.boolean_mask(exclusive, segment_starts), tf.maximum(segment_ids, 0))
    return exclusive - base


def piece_surfaces(pieces, piece_kind, consume_leading_space, reset_after_consume, unk_surface):
    """SentencePiece's per-piece decoding, vectorised.

    Returns `(surface_at_start, surface_later, ends_start_phase)`: the text a
    piece decodes to while SentencePiece is still at the start of the output
    (where a leading "▁" is dropped), the text it decodes to later, and whether
    decoding it ends that start phase. `Decode` starts in that phase and
    leaves it after the first piece that produces text, or (when the model
    does not remove extra whitespace) after the first piece whose leading "▁"
    was dropped.
    """
    is_normal = tf.equal(piece_kind, PIECE_NORMAL)
    normal_later = tf.strings.regex_replace(pieces, META_SPACE, " ")
    surface_later = tf.where(
        is_normal,
        normal_later,
        tf.where(
            tf.equal(piece_kind, PIECE_CONTROL),
            tf.zeros_like(pieces),
            tf.where(tf.equal(piece_kind, PIECE_UNKNOWN), tf.fill(tf.shape(pieces), unk_surface), pieces),
        ),
    )
    if not consume_leading_space:
        surface_start = surface_later
        consumed = tf.zeros_like(is_normal)
    else:
        consumed = is_normal & starts_with(pieces, META_SPACE)
        without_prefix = tf.strings.regex_replace(
            tf.strings.regex_replace(pieces, "^" + META_SPACE, ""), META_SPACE, " "
        )
        surface_start = tf.where(consumed, without_prefix, surface_later)
    ends_start_phase = tf.strings.length(surface_start) > 0
    if not reset_after_consume:
        ends_start_phase = ends_start_phase | consumed
    return surface_start, surface_later, ends_start_phase


def clean_up_tokenization(strings):
    """transformers' `clean_up_tokenization`: fixed, ordered replacements."""
    for old, new in (
        (" .", "."),
        (" ?", "?"),
        (" !", "!"),
        (" ,", ","),
        (" ' ", "'"),
        (" n't", "n't"),
        (" 'm", "'m"),
        (" 's", "'s"),
        (" 've", "'ve"),
        (" 're", "'re"),
    ):
        strings = tf.strings.regex_replace(strings, re2_literal(old), new.replace("\\", "\\\\"))
    return strings
