"""Configuration of mT5 (T5 v1.1 architecture), field for field as the reference's config.json."""

import dataclasses
from typing import Optional

from tfmodels.layers.activations import ACTIVATION_NAMES
from tfmodels.models.config_base import ConfigError, PretrainedConfig


# The fields whose defaults differ between the reference's T5Config and MT5Config.
T5_DEFAULTS = {
    "vocab_size": 32128,
    "d_ff": 2048,
    "num_layers": 6,
    "num_heads": 8,
    "feed_forward_proj": "relu",
    "tie_word_embeddings": True,
}


@dataclasses.dataclass
class MT5Config(PretrainedConfig):
    """mT5 hyper-parameters; defaults are those of `google/mt5-small`.

    `feed_forward_proj` is `"<activation>"` or `"gated-<activation>"`; `"gated-gelu"`
    means the tanh-approximated GELU, as in the reference.

    Example:
    >>> config = MT5Config(vocab_size=128, d_model=32, d_kv=8, d_ff=64, num_layers=2,
    ...                    num_heads=4)
    >>> config.num_decoder_layers, config.is_gated_act, config.dense_act_fn
    (2, True, 'gelu_new')
    """

    model_type = "mt5"
    attribute_map = {"hidden_size": "d_model", "num_attention_heads": "num_heads",
                     "num_hidden_layers": "num_layers", "head_dim": "d_kv"}

    vocab_size: int = 250112
    d_model: int = 512
    d_kv: int = 64
    d_ff: int = 1024
    num_layers: int = 8
    num_decoder_layers: Optional[int] = None
    num_heads: int = 6
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    dropout_rate: float = 0.1
    layer_norm_epsilon: float = 1e-6
    initializer_factor: float = 1.0
    feed_forward_proj: str = "gated-gelu"
    is_encoder_decoder: bool = True
    use_cache: bool = True
    tokenizer_class: str = "T5Tokenizer"
    tie_word_embeddings: bool = False
    pad_token_id: int = 0
    eos_token_id: int = 1
    decoder_start_token_id: int = 0
    classifier_dropout: float = 0.0

    @classmethod
    def accepted_model_types(cls):
        # mT5 is the T5 v1.1 architecture; plain T5 checkpoints load with the same code.
        return {"mt5", "t5"}

    @classmethod
    def from_dict(cls, values):
        """As the base class; a `"t5"` config's missing keys take T5's defaults.

        A T5 `config.json` leaves out what equals T5's defaults (transformers drops a
        `tie_word_embeddings` of True; T5 v1.0 configs have no `feed_forward_proj`),
        and those differ from mT5's.
        """
        if values.get("model_type") == "t5":
            values = {**T5_DEFAULTS, **values}
        return super().from_dict(values)

    def validate(self):
        if self.num_decoder_layers is None:
            self.num_decoder_layers = self.num_layers
        self._require_positive_int(
            "vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_decoder_layers",
            "num_heads", "relative_attention_num_buckets", "relative_attention_max_distance",
        )
        buckets, distance = self.relative_attention_num_buckets, self.relative_attention_max_distance
        if buckets < 4 or distance <= buckets // 2:
            # The decoder's exact buckets are the first half; the log-spaced rest needs a
            # larger distance to span (else bucket ids go negative or divide by zero).
            raise ConfigError(
                f"MT5Config: relative_attention_num_buckets={buckets} and "
                f"relative_attention_max_distance={distance} do not fit: need at least 4 "
                "buckets and a max distance above half the buckets"
            )
        self._require_probability("dropout_rate", "classifier_dropout")
        if not isinstance(self.layer_norm_epsilon, (int, float)) or self.layer_norm_epsilon <= 0:
            raise ConfigError(f"MT5Config.layer_norm_epsilon must be > 0, got {self.layer_norm_epsilon!r}")
        self._require_token_id("pad_token_id", "eos_token_id", "decoder_start_token_id")
        parts = str(self.feed_forward_proj).split("-")
        if (len(parts) == 2 and parts[0] != "gated") or len(parts) > 2 or (
            self.dense_act_fn not in ACTIVATION_NAMES
        ):
            raise ConfigError(
                f"MT5Config.feed_forward_proj={self.feed_forward_proj!r} is not valid: use "
                f"'<act>' or 'gated-<act>' with <act> one of {', '.join(ACTIVATION_NAMES)}"
            )

    @property
    def is_gated_act(self):
        return str(self.feed_forward_proj).startswith("gated-")

    @property
    def dense_act_fn(self):
        if self.feed_forward_proj == "gated-gelu":
            return "gelu_new"
        return str(self.feed_forward_proj).split("-")[-1]
