from tfmodels.models.mt5.mt5_config import MT5Config
from tfmodels.models.mt5.mt5_model import (
    MT5EncoderModel,
    MT5ForConditionalGeneration,
    MT5Model,
)
