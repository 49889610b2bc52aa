"""In-graph SentencePiece tokenizers for mT5 and M2M100.

`T5Tokenizer` and `M2M100Tokenizer` are Keras layers that reproduce the token
ids and decoded strings of transformers' slow tokenizers (4.57) using only
TensorFlow and tensorflow-text ops at run time, so they work in `tf.data`,
`tf.function` and exported SavedModels. Build them from a checkpoint's own
files with `from_pretrained(directory)`.
"""

from tfmodels.tokenizers.m2m100_tokenizer import M2M100Tokenizer
from tfmodels.tokenizers.t5_tokenizer import T5Tokenizer

__all__ = ["M2M100Tokenizer", "T5Tokenizer"]
