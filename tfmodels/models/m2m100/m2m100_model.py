"""M2M100: the shared encoder-decoder core with fairseq choices (layer norm with bias,
scaled queries, biased projections, ReLU MLP, sqrt(d_model)-scaled token embeddings,
sinusoidal positions counted over non-pad tokens, LM head tied to the embeddings)."""

import math

import keras

from tfmodels.layers.initializers import NormalWithZeroRow
from tfmodels.layers.sinusoidal_position_embedding import (
    SinusoidalPositionEmbedding,
    padding_aware_position_ids,
)
from tfmodels.models.m2m100.m2m100_config import M2M100Config
from tfmodels.models.seq2seq import Seq2SeqModelBase

_FAIRSEQ_PROJECTION_NAMES = {"query": "q_proj", "key": "k_proj", "value": "v_proj",
                             "output": "out_proj"}
_FAIRSEQ_MODULE_NAMES = {
    "self_attention_norm": "self_attn_layer_norm",
    "cross_attention_norm": "encoder_attn_layer_norm",
    "feed_forward_norm": "final_layer_norm",
    "feed_forward.intermediate": "fc1",
    "feed_forward.output": "fc2",
}


class M2M100Family(Seq2SeqModelBase):
    """What M2M100 adds to the shared core; the public classes below pick the heads."""

    config_class = M2M100Config
    positions_skip_pad_tokens = True

    def create_family_layers(self):
        config = self.config
        self.position_embedding = SinusoidalPositionEmbedding(
            embedding_dim=config.d_model,
            padding_idx=config.pad_token_id,
            dtype=self.dtype_policy,
            name="position_embedding",
        )

    def stack_kwargs(self, is_decoder):
        config = self.config
        heads = config.decoder_attention_heads if is_decoder else config.encoder_attention_heads
        return dict(
            num_layers=config.decoder_layers if is_decoder else config.encoder_layers,
            hidden_dim=config.d_model,
            num_heads=heads,
            head_dim=config.d_model // heads,
            intermediate_dim=config.decoder_ffn_dim if is_decoder else config.encoder_ffn_dim,
            activation=config.activation_function,
            gated_ffn=False,
            use_bias=True,
            norm_type="layer",
            norm_epsilon=1e-5,
            scale_queries=True,
            is_decoder=is_decoder,
            relative_attention_num_buckets=None,
            dropout=config.dropout,
            attention_dropout=config.attention_dropout,
            activation_dropout=config.activation_dropout,
            float16_clamp=None if is_decoder else "layer_output",
            layerdrop=config.decoder_layerdrop if is_decoder else config.encoder_layerdrop,
            dropout_after_final_norm=False,
            kernel_initializer=keras.initializers.RandomNormal(stddev=config.init_std),
        )

    def embedding_initializer(self):
        # As the reference: the padding id's row starts at zero.
        return NormalWithZeroRow(stddev=self.config.init_std, zero_row=self.config.pad_token_id)

    def embed_inputs(self, token_ids, is_decoder, past_length=0):
        token_vectors = self.token_embedding(token_ids)
        if self.config.scale_embedding:
            token_vectors = token_vectors * keras.ops.cast(
                math.sqrt(self.config.d_model), token_vectors.dtype
            )
        position_ids = padding_aware_position_ids(
            token_ids, self.config.pad_token_id, past_length
        )
        return token_vectors + self.position_embedding(position_ids)

    def hf_module_name(self, role, stack=None, index=None):
        if role == "shared":
            return self.hf_prefix + "shared"
        if role == "lm_head":
            return "lm_head"
        if role == "final_norm":
            return f"{self.hf_prefix}{stack}.layer_norm"
        layer = f"{self.hf_prefix}{stack}.layers.{index}"
        if role in _FAIRSEQ_MODULE_NAMES:
            return f"{layer}.{_FAIRSEQ_MODULE_NAMES[role]}"
        sublayer, part = role.split(".")
        attention = {"self_attention": "self_attn", "cross_attention": "encoder_attn"}[sublayer]
        return f"{layer}.{attention}.{_FAIRSEQ_PROJECTION_NAMES[part]}"


@keras.saving.register_keras_serializable(package="tfmodels")
class M2M100Model(M2M100Family):
    """Bare M2M100 encoder-decoder: returns the decoder's `last_hidden_state`.

    Example:
    >>> config = M2M100Config(vocab_size=64, d_model=16, encoder_layers=1,
    ...                       decoder_layers=1, encoder_attention_heads=2,
    ...                       decoder_attention_heads=2, encoder_ffn_dim=32,
    ...                       decoder_ffn_dim=32)
    >>> out = M2M100Model(config)(input_ids=[[5, 6, 2]], decoder_input_ids=[[2, 5]])
    >>> out.last_hidden_state.shape
    TensorShape([1, 2, 16])
    """


@keras.saving.register_keras_serializable(package="tfmodels")
class M2M100ForConditionalGeneration(M2M100Family):
    """M2M100 with its (tied) LM head: `logits`, and `loss` when `labels` are given.

    Example:
    >>> config = M2M100Config(vocab_size=64, d_model=16, encoder_layers=1,
    ...                       decoder_layers=1, encoder_attention_heads=2,
    ...                       decoder_attention_heads=2, encoder_ffn_dim=32,
    ...                       decoder_ffn_dim=32)
    >>> model = M2M100ForConditionalGeneration(config)
    >>> model(input_ids=[[5, 6, 2]], labels=[[7, 2]]).logits.shape
    TensorShape([1, 2, 64])
    """

    has_lm_head = True
    hf_prefix = "model."
