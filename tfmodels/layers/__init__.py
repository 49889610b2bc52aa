"""Building blocks shared by every model family in tfmodels."""

from tfmodels.layers.activations import get_activation
from tfmodels.layers.attention import MultiHeadAttention, mask_to_bias
from tfmodels.layers.dense import Dense
from tfmodels.layers.feed_forward import FeedForward
from tfmodels.layers.initializers import clone_initializer
from tfmodels.layers.int8_matrix import Int8Matrix, quantize_rows
from tfmodels.layers.relative_position_bias import RelativePositionBias
from tfmodels.layers.rms_norm import RMSNorm
from tfmodels.layers.screened_head import ScreenedHead
from tfmodels.layers.sinusoidal_position_embedding import (
    SinusoidalPositionEmbedding,
    padding_aware_position_ids,
)
from tfmodels.layers.transformer_layer import TransformerLayer
from tfmodels.layers.transformer_stack import TransformerStack
