"""Loads what an export needs from one checkpoint folder: the model and its tokenizer."""

import os

from tfmodels.auto import load_seq2seq_lm
from tfmodels.tokenizers import M2M100Tokenizer, T5Tokenizer

# model_type (config.json) -> (tokenizer class, the file that must be present)
TOKENIZERS = {
    "mt5": (T5Tokenizer, "spiece.model"),
    "t5": (T5Tokenizer, "spiece.model"),
    "m2m_100": (M2M100Tokenizer, "sentencepiece.bpe.model"),
}


def model_family(model):
    """`"m2m_100"` or `"mt5"`: decides which signature inputs exist (languages or not)."""
    return "m2m_100" if model.config.model_type == "m2m_100" else "mt5"


def load_tokenizer(checkpoint_dir, model_type):
    """The in-graph tokenizer saved next to the weights (`from_pretrained(checkpoint_dir)`)."""
    if model_type not in TOKENIZERS:
        raise ValueError(f"No tokenizer known for model_type={model_type!r}")
    tokenizer_class, required_file = TOKENIZERS[model_type]
    if not os.path.isfile(os.path.join(checkpoint_dir, required_file)):
        raise FileNotFoundError(
            f"{checkpoint_dir!r} has no {required_file}: the export puts the tokenizer in the "
            "graph, so the checkpoint folder must hold the tokenizer files too"
        )
    return tokenizer_class.from_pretrained(checkpoint_dir)


def check_vocabulary_fits(model, tokenizer):
    """Every id the tokenizer can produce must be an id of the model."""
    tokenizer_ids = tokenizer.vocabulary_size()
    if tokenizer_ids > model.config.vocab_size:
        raise ValueError(
            f"The tokenizer has {tokenizer_ids} ids but the model's vocab_size is "
            f"{model.config.vocab_size}: they do not belong together"
        )


def load_checkpoint(checkpoint_dir, dtype=None):
    """`(model, tokenizer)` from a folder with config.json, weights and tokenizer files;
    `dtype` as for `from_pretrained` (e.g. `"bfloat16"` weights; None = float32).

    Example (the bundled translator):
    >>> from tfmodels import BUNDLED_TRANSLATOR_DIR
    >>> model, tokenizer = load_checkpoint(BUNDLED_TRANSLATOR_DIR)
    >>> type(model).__name__, type(tokenizer).__name__
    ('M2M100ForConditionalGeneration', 'M2M100Tokenizer')
    """
    if not os.path.isdir(checkpoint_dir):
        raise FileNotFoundError(f"Checkpoint folder {checkpoint_dir!r} does not exist")
    model = load_seq2seq_lm(checkpoint_dir, dtype=dtype)
    tokenizer = load_tokenizer(checkpoint_dir, model.config.model_type)
    check_vocabulary_fits(model, tokenizer)
    return model, tokenizer
