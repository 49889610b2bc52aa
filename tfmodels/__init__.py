"""tfmodels: mT5 and M2M100 for TensorFlow / Keras 3."""

import os as _os

# Keras 3 must run on the TensorFlow backend: every layer here uses TF ops directly.
_os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from tfmodels.models.config_base import ConfigError, PretrainedConfig  # noqa: E402
from tfmodels.models.m2m100 import (  # noqa: E402
    M2M100Config,
    M2M100ForConditionalGeneration,
    M2M100Model,
)
from tfmodels.models.mt5 import (  # noqa: E402
    MT5Config,
    MT5EncoderModel,
    MT5ForConditionalGeneration,
    MT5Model,
)
from tfmodels.models.outputs import ModelOutput  # noqa: E402

__version__ = "0.1.0"

# The small M2M100 translator shipped with the package (English -> six languages; what
# `tfmodels demo` runs): docstring examples and smoke tests run on it without a download.
BUNDLED_TRANSLATOR_DIR = _os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "assets",
                                       "default-translator")
