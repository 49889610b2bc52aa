"""tensorflow-text's regular SentencePiece op, created inside each graph."""

import functools

import tensorflow as tf
import tensorflow_text as tf_text


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
        # Through a partial: TensorFlow counts traces per code object to warn about
        # "frequent retracing", and each tokenizer's function traces once, so with a bound
        # method a process's fifth tokenizer would draw that warning.
        self._eager_fn = tf.function(
            functools.partial(self._tokenize_in_graph),
            input_signature=[tf.TensorSpec([None], tf.string)],
            autograph=False,
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
