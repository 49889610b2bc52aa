"""mT5: the shared encoder-decoder core with T5 v1.1 choices (RMS norm, relative position
buckets, unscaled attention, bias-free projections, gated-GELU, untied LM head)."""

import keras

from tfmodels.models.mt5.mt5_config import MT5Config
from tfmodels.models.seq2seq import Seq2SeqModelBase

_T5_PROJECTION_NAMES = {"query": "q", "key": "k", "value": "v", "output": "o"}


def _fan_in_normal(variance_scale):
    """Normal with std sqrt(variance_scale / fan_in); fan_in is a Dense kernel's rows."""
    return keras.initializers.VarianceScaling(
        scale=variance_scale, mode="fan_in", distribution="untruncated_normal"
    )


class MT5Family(Seq2SeqModelBase):
    """What mT5 adds to the shared core; the public classes below pick the heads."""

    config_class = MT5Config
    # Checkpoints saved by transformers before 4.0 hold a cross-attention position
    # bias that no T5 layer reads.
    hf_ignored_tensor_names = ("decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight",)
    # MT5ForSequenceClassification / ForTokenClassification (backbone under `transformer.`)
    # and ForQuestionAnswering.
    hf_task_backbone_prefix = "transformer."
    hf_task_head_prefixes = ("classification_head.", "classifier.", "qa_outputs.")

    def stack_kwargs(self, is_decoder):
        config = self.config
        factor = config.initializer_factor
        return dict(
            num_layers=config.num_decoder_layers if is_decoder else config.num_layers,
            hidden_dim=config.d_model,
            num_heads=config.num_heads,
            head_dim=config.d_kv,
            intermediate_dim=config.d_ff,
            activation=config.dense_act_fn,
            gated_ffn=config.is_gated_act,
            use_bias=False,
            norm_type="rms",
            norm_epsilon=config.layer_norm_epsilon,
            scale_queries=False,  # T5 folds the 1/sqrt(d) into its initialisation
            is_decoder=is_decoder,
            relative_attention_num_buckets=config.relative_attention_num_buckets,
            relative_attention_max_distance=config.relative_attention_max_distance,
            dropout=config.dropout_rate,
            attention_dropout=config.dropout_rate,
            activation_dropout=config.dropout_rate,
            float16_clamp="after_each_sublayer",
            dropout_after_final_norm=True,
            # The reference's (Mesh TensorFlow's) initialisation: every projection draws
            # with std factor / sqrt(fan_in) (wi: d_model, wo: d_ff, o: heads * d_kv) ...
            kernel_initializer=_fan_in_normal(factor**2),
            # ... except the query kernel, which also carries the 1/sqrt(d_kv) that T5
            # leaves out of its attention scores.
            query_kernel_initializer=_fan_in_normal(factor**2 / config.d_kv),
            position_bias_initializer=keras.initializers.RandomNormal(
                stddev=factor * config.d_model**-0.5
            ),
        )

    def embedding_initializer(self):
        return keras.initializers.RandomNormal(stddev=self.config.initializer_factor)

    def embed_inputs(self, token_ids, is_decoder, past_length=0):
        return self.token_embedding(token_ids)

    def lm_head_input_scale(self):
        # With a tied head T5 rescales the decoder output by 1/sqrt(d_model).
        return self.config.d_model**-0.5

    def hf_module_name(self, role, stack=None, index=None):
        if role in ("shared", "lm_head"):
            return self.hf_prefix + role
        if role == "final_norm":
            return f"{self.hf_prefix}{stack}.final_layer_norm"
        if role == "relative_position_bias":
            return f"{self.hf_prefix}{stack}.block.0.layer.0.SelfAttention.relative_attention_bias"
        block = f"{self.hf_prefix}{stack}.block.{index}.layer"
        feed_forward_slot = 2 if stack == "decoder" else 1
        if role == "self_attention_norm":
            return f"{block}.0.layer_norm"
        if role == "cross_attention_norm":
            return f"{block}.1.layer_norm"
        if role == "feed_forward_norm":
            return f"{block}.{feed_forward_slot}.layer_norm"
        sublayer, part = role.split(".")
        if sublayer == "self_attention":
            return f"{block}.0.SelfAttention.{_T5_PROJECTION_NAMES[part]}"
        if sublayer == "cross_attention":
            return f"{block}.1.EncDecAttention.{_T5_PROJECTION_NAMES[part]}"
        if sublayer == "feed_forward":
            gated = self.config.is_gated_act
            name = {"intermediate": "wi_0" if gated else "wi", "linear": "wi_1", "output": "wo"}
            return f"{block}.{feed_forward_slot}.DenseReluDense.{name[part]}"
        raise KeyError(f"unknown weight role {role!r}")


@keras.saving.register_keras_serializable(package="tfmodels")
class MT5Model(MT5Family):
    """Bare mT5 encoder-decoder: returns the decoder's `last_hidden_state`.

    Example:
    >>> config = MT5Config(vocab_size=64, d_model=16, d_kv=4, d_ff=32, num_layers=1,
    ...                    num_heads=2)
    >>> model = MT5Model(config)
    >>> out = model(input_ids=[[5, 6, 1]], decoder_input_ids=[[0, 5]])
    >>> out.last_hidden_state.shape
    TensorShape([1, 2, 16])
    """


@keras.saving.register_keras_serializable(package="tfmodels")
class MT5EncoderModel(MT5Family):
    """mT5 encoder only (embeddings, retrieval, classification heads).

    Example:
    >>> config = MT5Config(vocab_size=64, d_model=16, d_kv=4, d_ff=32, num_layers=1,
    ...                    num_heads=2)
    >>> MT5EncoderModel(config)(input_ids=[[5, 6, 1]]).last_hidden_state.shape
    TensorShape([1, 3, 16])
    """

    has_decoder = False


@keras.saving.register_keras_serializable(package="tfmodels")
class MT5ForConditionalGeneration(MT5Family):
    """mT5 with its LM head: `logits`, and `loss` when `labels` are given.

    Example:
    >>> config = MT5Config(vocab_size=64, d_model=16, d_kv=4, d_ff=32, num_layers=1,
    ...                    num_heads=2)
    >>> model = MT5ForConditionalGeneration(config)
    >>> out = model(input_ids=[[5, 6, 1]], labels=[[7, 1]])
    >>> out.logits.shape, out.loss.shape
    (TensorShape([1, 2, 64]), TensorShape([]))
    """

    has_lm_head = True
