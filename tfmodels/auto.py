"""Picks the model class from a checkpoint's `config.json` (`model_type`)."""

import os

from converters.json_files import read_json_object
from tfmodels.models.config_base import ConfigError, check_checkpoint_directory
from tfmodels.models.m2m100 import M2M100ForConditionalGeneration
from tfmodels.models.mt5 import MT5ForConditionalGeneration

SEQ2SEQ_LM_CLASSES = {
    "mt5": MT5ForConditionalGeneration,
    "t5": MT5ForConditionalGeneration,
    "m2m_100": M2M100ForConditionalGeneration,
}


def seq2seq_lm_class_for(directory):
    """The `*ForConditionalGeneration` class that loads the checkpoint in `directory`."""
    check_checkpoint_directory(directory)
    config_path = os.path.join(directory, "config.json")
    if not os.path.isfile(config_path):
        raise FileNotFoundError(f"No config.json in {directory!r}")
    model_type = read_json_object(config_path, ConfigError).get("model_type")
    try:
        return SEQ2SEQ_LM_CLASSES[model_type]
    except KeyError:
        raise ValueError(
            f"{config_path} has model_type={model_type!r}; tfmodels supports "
            f"{sorted(SEQ2SEQ_LM_CLASSES)}"
        ) from None


def load_seq2seq_lm(directory, allow_bin=False, dtype=None):
    """Loads any supported checkpoint as its `*ForConditionalGeneration` model.

    Example (the bundled translator, an M2M100 checkpoint):
    >>> from tfmodels import BUNDLED_TRANSLATOR_DIR
    >>> type(load_seq2seq_lm(BUNDLED_TRANSLATOR_DIR)).__name__
    'M2M100ForConditionalGeneration'
    """
    return seq2seq_lm_class_for(directory).from_pretrained(
        directory, allow_bin=allow_bin, dtype=dtype
    )
