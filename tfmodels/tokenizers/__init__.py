"""In-graph SentencePiece tokenizers for mT5 and M2M100."""

from tfmodels.tokenizers.m2m100_tokenizer import M2M100Tokenizer
from tfmodels.tokenizers.t5_tokenizer import T5Tokenizer

__all__ = ["M2M100Tokenizer", "T5Tokenizer"]
