"""Exact unigram SentencePiece encoding from tensorflow-text ops."""

import tensorflow as tf

from tfmodels.tokenizers import sentencepiece_model
from tfmodels.tokenizers import text_graph_ops as ops
from tfmodels.tokenizers.fast_sentencepiece import FastSentencepiece
from tfmodels.tokenizers.graph_sentencepiece import GraphSentencepiece


class ExactUnigramEncoder:
    """Unigram ids identical to Python SentencePiece, from tf-text ops.

    Python SentencePiece (>= 0.2, what transformers uses) finds the best
    segmentation with float32 path scores, the earliest start winning exact
    ties. tf-text's fast op runs the same search with the same arithmetic,
    except that it charges the unknown-character penalty once per *byte*
    (not per character) and, without a dummy prefix, keeps a leading "▁" for
    leading whitespace. Either changes running path scores, so near-ties
    further on ("555" as "5"+"55" or "55"+"5") can resolve differently. (tf-
    text's regular op uses an older search whose near-ties also differ.)

    So text reaches the fast op only in a form where both agree: text made of
    inert characters (see `sentencepiece_model.fast_encoding_patterns`) as
    is; other text normalized first (the regular op's pieces, joined, spell
    the normalized text), each unknown character replaced by one unknown
    byte (0xFF), and encoded by a copy of the model whose normalization map
    changes nothing.

    A plain Python object (not tracked); the fast op keeps its model in a
    constant.
    """

    def __init__(self, proto_bytes):
        model = sentencepiece_model.parse_proto(proto_bytes)
        self._adds_dummy_prefix = model.normalizer_spec.add_dummy_prefix
        self._inert_text, self._unknown_char = sentencepiece_model.fast_encoding_patterns(proto_bytes)
        self._normalizer = GraphSentencepiece(proto_bytes, out_type=tf.string)
        self._fast = FastSentencepiece(sentencepiece_model.without_normalization(proto_bytes))

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
        normalized = tf.strings.regex_replace(normalized, self._unknown_char, sentencepiece_model.UNKNOWN_BYTE)
        prepared = tf.dynamic_stitch(
            [tf.boolean_mask(positions, inert), other], [tf.boolean_mask(texts, inert), normalized]
        )
        prepared = tf.reshape(prepared, tf.shape(texts))
        return self._fast.tokenize(prepared)
