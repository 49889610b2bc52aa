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
    starts = tf.cast(starts, tf.int64)
    lengths = tf.cast(lengths, tf.int64)
    begin = tf.cast(ragged.row_starts(), tf.int64) + starts
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
    # Element i belongs to segment `segment_ids[i]`; elements before the first
    # start belong to a virtual segment 0 whose base is 0.
    segment_ids = tf.cumsum(tf.cast(segment_starts, tf.int32))
    bases = tf.concat([tf.zeros([1], values.dtype), tf.boolean_mask(exclusive, segment_starts)], axis=0)
    return exclusive - tf.gather(bases, segment_ids)


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


def ragged_column(values):
    """A ragged [n, (1)] tensor with one value per row."""
    values = tf.reshape(values, [-1])
    return tf.RaggedTensor.from_row_lengths(
        values, tf.ones(tf.shape(values, out_type=tf.int64), tf.int64), validate=False
    )


def concat_ragged_rows(parts):
    """Row-wise concatenation of ragged `[n, (k_i)]` tensors with the same `n`.

    Equivalent to `tf.concat(parts, axis=1)`, built from a single
    `dynamic_stitch` without the validation ops that ragged concatenation
    adds to every traced graph.
    """
    lengths = [tf.cast(part.row_lengths(), tf.int64) for part in parts]
    total = tf.add_n(lengths)
    starts = tf.cumsum(total, exclusive=True)
    offset = tf.zeros_like(total)
    indices = []
    for part, length in zip(parts, lengths):
        rows = part.value_rowids()
        within = tf.range(tf.size(part.values, out_type=tf.int64)) - tf.gather(
            tf.cast(part.row_starts(), tf.int64), rows
        )
        indices.append(tf.cast(tf.gather(starts + offset, rows) + within, tf.int32))
        offset = offset + length
    values = tf.dynamic_stitch(indices, [part.values for part in parts])
    return tf.RaggedTensor.from_row_lengths(values, total, validate=False)


# tf-text's regex split ends each string at its first NUL character, so NULs
# cross it escaped: first "\x01" -> "\x01\x03", then NUL -> "\x01\x02". A
# pattern that can neither start nor end a match with "\x01"-"\x03" splits
# the escaped text at the same places.
_NUL_ESCAPE_CHARS = "\x01\x02\x03"


def pattern_allows_nul_escape(literals):
    """Whether a split pattern built from `literals` works on NUL-escaped text."""
    return not any(char in literal for literal in literals for char in _NUL_ESCAPE_CHARS)


def _escape_nul(texts):
    return tf.strings.regex_replace(tf.strings.regex_replace(texts, "\x01", "\x01\x03"), "\x00", "\x01\x02")


def _unescape_nul(texts):
    # Every "\x01" of escaped text starts a pair, so the two passes cannot
    # misread each other's output.
    return tf.strings.regex_replace(tf.strings.regex_replace(texts, "\x01\x02", "\x00"), "\x01\x03", "\x01")


def regex_split_keep_delimiters(texts, pattern, *, escape_nul):
    """`tf_text.regex_split(texts, pattern, pattern)` for a 1-D string tensor.

    Returns `(pieces, row_splits)`; built without the ragged validation ops
    that the public wrapper adds (they dominate tracing time). With
    `escape_nul` (only for patterns that `pattern_allows_nul_escape`), text
    after a NUL character is split too instead of being dropped.
    """
    if escape_nul:
        # One pass instead of four when no text holds a NUL (regex_full_match stops at
        # a NUL too; regex_replace does not).
        has_nul = tf.reduce_any(
            tf.strings.length(tf.strings.regex_replace(texts, "\x00", "")) < tf.strings.length(texts))

        def escaped():
            pieces, row_splits = regex_split_keep_delimiters(_escape_nul(texts), pattern, escape_nul=False)
            return _unescape_nul(pieces), row_splits

        return tf.cond(has_nul, escaped, lambda: regex_split_keep_delimiters(texts, pattern, escape_nul=False))
    try:
        from tensorflow_text.python.ops import regex_split_ops

        wrapped = "(" + pattern + ")"
        pieces, _, _, row_splits = regex_split_ops.gen_regex_split_ops.regex_split_with_offsets(
            texts, wrapped, wrapped
        )
        return pieces, row_splits
    except (ImportError, AttributeError):  # private module moved: use the public op
        import tensorflow_text as tf_text

        ragged = tf_text.regex_split(texts, pattern, pattern)
        return ragged.values, ragged.row_splits
