"""Configuration of M2M100, field for field as the reference's config.json."""

import dataclasses

from tfmodels.layers.activations import ACTIVATION_NAMES
from tfmodels.models.config_base import ConfigError, PretrainedConfig


@dataclasses.dataclass
class M2M100Config(PretrainedConfig):
    """M2M100 hyper-parameters; defaults are those of `facebook/m2m100_418M`.

    Example:
    >>> config = M2M100Config(vocab_size=128, d_model=32, encoder_layers=2,
    ...                       decoder_layers=2, encoder_attention_heads=4,
    ...                       decoder_attention_heads=4, encoder_ffn_dim=64,
    ...                       decoder_ffn_dim=64, max_position_embeddings=64)
    >>> config.scale_embedding, config.decoder_start_token_id
    (True, 2)
    """

    model_type = "m2m_100"
    attribute_map = {"num_attention_heads": "encoder_attention_heads", "hidden_size": "d_model"}

    vocab_size: int = 128112
    max_position_embeddings: int = 1024
    encoder_layers: int = 12
    encoder_ffn_dim: int = 4096
    encoder_attention_heads: int = 16
    decoder_layers: int = 12
    decoder_ffn_dim: int = 4096
    decoder_attention_heads: int = 16
    encoder_layerdrop: float = 0.05
    decoder_layerdrop: float = 0.05
    use_cache: bool = True
    is_encoder_decoder: bool = True
    activation_function: str = "relu"
    d_model: int = 1024
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0
    init_std: float = 0.02
    scale_embedding: bool = True
    tie_word_embeddings: bool = True
    pad_token_id: int = 1
    bos_token_id: int = 0
    eos_token_id: int = 2
    decoder_start_token_id: int = 2

    def validate(self):
        self._require_positive_int(
            "vocab_size", "max_position_embeddings", "encoder_layers", "encoder_ffn_dim",
            "encoder_attention_heads", "decoder_layers", "decoder_ffn_dim",
            "decoder_attention_heads", "d_model",
        )
        self._require_probability(
            "dropout", "attention_dropout", "activation_dropout", "encoder_layerdrop",
            "decoder_layerdrop",
        )
        for heads_field in ("encoder_attention_heads", "decoder_attention_heads"):
            heads = getattr(self, heads_field)
            if self.d_model % heads:
                raise ConfigError(
                    f"M2M100Config.d_model={self.d_model} must be divisible by "
                    f"{heads_field}={heads}"
                )
        if self.activation_function not in ACTIVATION_NAMES:
            raise ConfigError(
                f"M2M100Config.activation_function={self.activation_function!r} is not one "
                f"of {', '.join(ACTIVATION_NAMES)}"
            )
        self._require_token_id("pad_token_id", "bos_token_id", "eos_token_id",
                               "decoder_start_token_id")
