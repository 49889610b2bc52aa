from tfmodels.models.m2m100.m2m100_config import M2M100Config
from tfmodels.models.m2m100.m2m100_model import M2M100ForConditionalGeneration, M2M100Model
