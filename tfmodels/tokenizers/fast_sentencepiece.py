"""tensorflow-text's fast SentencePiece encoder op."""

import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text


class FastSentencepiece:
    """tensorflow-text's fast SentencePiece encoder op, encoding only.

    `tf_text.FastSentencepieceTokenizer` also converts a decoder and builds its
    model constants from Python lists (seconds for a 250k-piece model); this
    builds the one constant it needs from a byte buffer. Falls back to the
    public class if tf-text's internals move.
    """

    def __init__(self, proto_bytes):
        try:
            from tensorflow_text.core.pybinds import pywrap_model_converter
            from tensorflow_text.python.ops import fast_sentencepiece_tokenizer as fast_module

            converted = pywrap_model_converter.convert_sentencepiece_model(proto_bytes)
            self._model = tf.constant(np.frombuffer(converted, dtype=np.uint8))
            self._op = fast_module.gen_fast_sentencepiece_tokenizer.tf_text_fast_sentencepiece_tokenize
            self._public = None
        except (ImportError, AttributeError):
            self._public = tf_text.FastSentencepieceTokenizer(proto_bytes)

    def tokenize(self, texts):
        """[n] strings -> ragged [n, (ids)]."""
        if self._public is not None:
            return self._public.tokenize(texts)
        values, row_splits = self._op(self._model, texts, 0, 0, False, False, False)
        return tf.RaggedTensor.from_row_splits(values, row_splits, validate=False)
