"""The encoder-decoder core every family builds on.

A family (mT5, M2M100) supplies only what differs: its config, how token ids become
input vectors, how stacks are configured, the LM head's tying/scaling and the names of
its weights in Hugging Face checkpoints. Everything else — the call contract, loss,
outputs, input checks, the incremental decoding API that generation drives, and
checkpoint import/export — lives here once.
"""

import os

import keras
import numpy as np
import tensorflow as tf

from tfmodels.layers.dense import (
    KERNEL_LAYOUTS,
    PROJECTION_KERNEL_LAYOUT,
    Dense,
    check_weight_quantization_mode,
)
from tfmodels.layers.int8_matrix import (attach_int8_matrix, attach_sublayer, detach_sublayer,
                                         weights_file_may_lack_copies)
from tfmodels.layers.relative_position_bias import RelativePositionBias
from tfmodels.layers.shapes import dimension
from tfmodels.layers.rms_norm import RMSNorm
from tfmodels.layers.transformer_stack import TransformerStack
from tfmodels.models.outputs import ModelOutput
from tfmodels.training.seq2seq_training import Seq2SeqTrainingMixin

IGNORE_INDEX = -100


# ----------------------------------------------------------------------------- input checks
def integer_input_description(name):
    """What an integer input holds, for error messages: a mask holds 1/0 flags, not ids."""
    return "integers (1 = token, 0 = padding)" if name.endswith("mask") else "integer token ids"


def as_id_tensor(name, value, required=True, vocab_size=None):
    """Converts ids to an int32 `[batch, length]` tensor, or raises a ValueError naming the
    problem (missing, wrong dtype, wrong rank, empty batch or no tokens).

    Masks may be boolean; ids may not. With `vocab_size`, ids outside `[0, vocab_size)`
    (labels may also be -100) are an error too, checked before the cast to int32 so that
    int64 ids cannot wrap around: at once where the values are known, else by an assert
    in the graph (which XLA leaves out).
    """
    if value is None:
        if required:
            raise ValueError(f"{name} is required")
        return None
    is_mask = name.endswith("mask")
    content = integer_input_description(name)
    if not tf.is_tensor(value):
        array = np.asarray(value)
        if array.dtype == object or array.dtype.kind not in ("iub" if is_mask else "iu"):
            raise TypeError(f"{name} must hold {content}, got an array of dtype {array.dtype}")
        value = tf.convert_to_tensor(array)
    if value.dtype.is_floating and _in_keras_symbolic_build():
        # Keras rebuilds a saved model around ours by calling it on float32 placeholders
        # (only shapes matter there); refusing them would leave the outer model unbuilt.
        value = tf.cast(value, tf.int32)
    if not (value.dtype.is_integer or (is_mask and value.dtype == tf.bool)):
        raise TypeError(f"{name} must hold {content}, got dtype {value.dtype.name}")
    rank = value.shape.rank
    if rank is not None and rank != 2:
        raise ValueError(
            f"{name} must have rank 2 [batch, length], got rank {rank} "
            f"(shape {value.shape.as_list()})"
        )
    if value.shape.rank is not None and value.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {value.shape.as_list()})")
    if value.shape.rank is not None and value.shape[1] == 0:
        raise ValueError(f"{name} has no tokens (shape {value.shape.as_list()})")
    if vocab_size is not None:
        value = _checked_id_range(name, value, vocab_size)
    return tf.cast(value, tf.int32)


def _in_keras_symbolic_build():
    """True inside Keras' symbolic calls (shape inference on placeholders)."""
    try:
        from keras.src.backend.common.symbolic_scope import in_symbolic_scope
    except ImportError:  # a Keras without it: float ids stay refused
        return False
    return in_symbolic_scope()


def _checked_id_range(name, ids, vocab_size):
    allowed = f"token ids in [0, {vocab_size})" + (" or -100" if name == "labels" else "")
    wide = tf.cast(ids, tf.int64)
    invalid = (wide < 0) | (wide >= vocab_size)
    if name == "labels":
        invalid &= wide != IGNORE_INDEX
    if tf.executing_eagerly():
        bad = wide.numpy()[invalid.numpy()]
        if bad.size:
            raise ValueError(f"{name} must hold {allowed}; got {sorted(set(bad.tolist()))[:10]}")
        return ids
    # Static-shape data only (no boolean_mask): XLA must still compile the graph around
    # the assert, which it then leaves out.
    check = tf.debugging.Assert(
        tf.logical_not(tf.reduce_any(invalid)),
        [f"{name} must hold {allowed}; got values from", tf.reduce_min(wide), "to",
         tf.reduce_max(wide)],
    )
    with tf.control_dependencies([check]):
        return tf.identity(ids)


def _check_same_shape(name, value, reference_name, reference):
    """Raises (statically where the shapes are known, else by a graph assert) unless the
    two `[batch, length]` tensors have one shape; a mask must not broadcast."""
    if value is None or reference is None:
        return value
    message = f"{name} must have the shape of {reference_name}"
    static, reference_static = value.shape.as_list(), reference.shape.as_list()
    if any(a is not None and b is not None and a != b for a, b in zip(static, reference_static)):
        raise ValueError(f"{message} {reference_static}, got {static}")
    if None not in static and None not in reference_static:
        return value
    with tf.control_dependencies(
            [tf.debugging.assert_equal(tf.shape(value), tf.shape(reference), message=message)]):
        return tf.identity(value)


def shift_tokens_right(labels, pad_token_id, decoder_start_token_id):
    """Teacher-forcing decoder inputs: `[start] + labels[:-1]`, with -100 read as pad."""
    labels = tf.cast(labels, tf.int32)
    batch = tf.shape(labels)[0]
    start = tf.fill([batch, 1], tf.constant(decoder_start_token_id, tf.int32))
    shifted = tf.concat([start, labels[:, :-1]], axis=1)
    return tf.where(tf.equal(shifted, IGNORE_INDEX), tf.constant(pad_token_id, tf.int32), shifted)


def masked_token_loss(labels, logits):
    """Mean cross-entropy over positions whose label is not -100 (the reference's loss)."""
    labels = tf.cast(labels, tf.int32)
    is_counted = tf.not_equal(labels, IGNORE_INDEX)
    per_token = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.where(is_counted, labels, tf.zeros_like(labels)),
        logits=tf.cast(logits, tf.float32),
    )
    counted = tf.cast(is_counted, tf.float32)
    return tf.reduce_sum(per_token * counted) / tf.reduce_sum(counted)


def _unpack_inputs(input_ids, kwargs):
    """Lets `model(dict_of_inputs)` (what Keras `fit` does) mean `model(**dict_of_inputs)`;
    a key that is no input is refused, as a misspelt keyword argument is."""
    if isinstance(input_ids, dict):
        unknown = sorted(set(input_ids) - {"input_ids", *kwargs})
        if unknown:
            raise TypeError(
                f"Unexpected model inputs {unknown}; the inputs are "
                f"{', '.join(['input_ids', *kwargs])}")
        merged = dict(input_ids)
        merged.update({key: value for key, value in kwargs.items() if value is not None})
        return merged.pop("input_ids", None), merged
    return input_ids, kwargs


# ------------------------------------------------------------------------------- base model
class Seq2SeqModelBase(Seq2SeqTrainingMixin, keras.Model):
    """Shared embedding + encoder stack (+ decoder stack) built from a family config.

    Subclasses set `config_class` and implement `stack_kwargs`, `embed_inputs` and
    `hf_weight_names`; `has_decoder = False` gives an encoder-only model. Variables are
    created at construction, so weights can be loaded (and `.keras` files restored)
    without a first call.

    `lm_head_layout` stores an untied LM head (mT5's) `"out_in"` (`[vocab, d_model]`, the
    default, as the reference stores it) or `"in_out"` (`[d_model, vocab]`). It changes
    speed, not results: under XLA on CPU several rows (beams, batches) take the panel
    product of `tfmodels.layers.products`, which needs `"out_in"`, while a single row
    (batch-1 greedy) reads the head faster `"in_out"`, even against the row slices
    `"out_in"` takes there on AMD processors (batch-1 greedy 5-17 % faster, four processes
    each; on an Intel Xeon with AMX 43.7 against 38.5 tokens/s, one process).
    mt5-small, 2 threads, tokens/s `"in_out"` -> `"out_in"` (`bench/generate.py`, one run,
    before the row slices): batch-1 greedy 45.5 -> 44.7, batch-1 beam 4 19.0 -> 29.5,
    batch-8 greedy 155.9 -> 193.0, batch-8 beam 4 69.9 -> 70.1. A tied head (M2M100)
    always multiplies by the `[vocab, d_model]` embeddings and ignores it.
    """

    config_class = None
    int8_tied_head = None  # Int8Matrix of the embeddings once a tied head is quantised
    head_screen = None  # ScreenedHead of the LM head once `enable_head_screening` ran
    has_decoder = True
    has_lm_head = False
    hf_prefix = ""  # module prefix of the reference's backbone ("model." for M2M100 LMs)
    # Checkpoint tensors (names after `hf_prefix`) that the reference drops on load.
    hf_ignored_tensor_names = ()
    # The reference's task heads we have no class for: their backbone's prefix in their
    # checkpoints, and their own layers (which our heads, like the reference's base
    # models, leave out when loading such a checkpoint).
    hf_task_backbone_prefix = None
    hf_task_head_prefixes = ()
    # Whether absolute positions count only non-pad tokens (M2M100's); a decoder prompt
    # with inner padding then positions its tokens by that count, not by cache slot.
    positions_skip_pad_tokens = False

    def __init__(self, config, lm_head_layout="out_in", **kwargs):
        super().__init__(**kwargs)
        if not isinstance(config, self.config_class):
            raise TypeError(
                f"{type(self).__name__} needs a {self.config_class.__name__}, "
                f"got {type(config).__name__}"
            )
        if lm_head_layout not in KERNEL_LAYOUTS:
            raise ValueError(
                f"Unknown lm_head_layout {lm_head_layout!r}; expected one of {KERNEL_LAYOUTS}"
            )
        for role, name in (("variables", self.dtype_policy.variable_dtype),
                           ("computations", self.dtype_policy.compute_dtype)):
            if not tf.as_dtype(name).is_floating:
                raise ValueError(
                    f"{type(self).__name__}: dtype={self.dtype_policy.name!r} gives {name} "
                    f"{role}; use a float dtype or policy (e.g. 'float32', 'bfloat16', "
                    "'mixed_bfloat16')"
                )
        self.config = config
        self.lm_head_layout = lm_head_layout
        self.token_embedding = keras.layers.Embedding(
            config.vocab_size,
            config.d_model,
            embeddings_initializer=self.embedding_initializer(),
            dtype=self.dtype_policy,
            name="shared",
        )
        self.encoder = TransformerStack(
            **self.stack_kwargs(is_decoder=False), dtype=self.dtype_policy, name="encoder"
        )
        self.decoder = (
            TransformerStack(
                **self.stack_kwargs(is_decoder=True), dtype=self.dtype_policy, name="decoder"
            )
            if self.has_decoder
            else None
        )
        self.lm_head = None
        if self.has_lm_head and not self.tie_word_embeddings:
            self.lm_head = Dense(
                config.vocab_size,
                use_bias=False,
                kernel_initializer=self.embedding_initializer(),
                dtype=self.dtype_policy,
                name="lm_head",
                kernel_layout=lm_head_layout,
            )
        self.create_family_layers()
        self.build()

    # -- what a family provides -----------------------------------------------------------
    def stack_kwargs(self, is_decoder):
        """Keyword arguments for `TransformerStack` built from the config."""
        raise NotImplementedError

    def embed_inputs(self, token_ids, is_decoder, past_length=0):
        """`[batch, length]` ids -> `[batch, length, d_model]` input vectors."""
        raise NotImplementedError

    def hf_module_name(self, role, stack=None, index=None):
        """The reference's module path for one of our sublayers, e.g. T5's
        `("self_attention.query", "encoder", 0)` -> `"encoder.block.0.layer.0.SelfAttention.q"`.

        Roles: `shared`, `lm_head`, `final_norm`, `relative_position_bias` (per stack) and,
        per layer, `self_attention_norm`, `cross_attention_norm`, `feed_forward_norm`,
        `{self,cross}_attention.{query,key,value,output}` and
        `feed_forward.{intermediate,linear,output}`.
        """
        raise NotImplementedError

    def hf_weight_aliases(self):
        """`{hf_name: [other names the same tensor may be saved under]}` for tied weights.

        Both families tie the encoder's and decoder's token embeddings to the shared
        matrix (and a tied LM head to it too); checkpoints list any subset of those names.
        """
        prefix = self.hf_prefix
        aliases = [prefix + "encoder.embed_tokens.weight"]
        if self.decoder is not None:
            aliases.append(prefix + "decoder.embed_tokens.weight")
        if self.has_lm_head and self.tie_word_embeddings:
            aliases.append("lm_head.weight")
        return {prefix + "shared.weight": aliases}

    def create_family_layers(self):
        """Creates family-specific sublayers (called before the model is built)."""

    def embedding_initializer(self):
        return keras.initializers.RandomNormal(stddev=1.0)

    @property
    def tie_word_embeddings(self):
        return bool(getattr(self.config, "tie_word_embeddings", False))

    def lm_head_input_scale(self):
        """Factor applied to the decoder output before a tied LM head (1.0 = none)."""
        return 1.0

    def tied_head_inputs(self, decoder_hidden_states):
        """The decoder output as a tied LM head multiplies it (times
        `lm_head_input_scale()`); unchanged for an untied head."""
        scale = 1.0 if self.lm_head is not None else self.lm_head_input_scale()
        if scale == 1.0:
            return decoder_hidden_states
        return decoder_hidden_states * tf.cast(scale, decoder_hidden_states.dtype)

    # -- construction ---------------------------------------------------------------------
    def build(self, input_shape=None):
        if self.built:
            return
        hidden_shape = (None, None, self.config.d_model)
        self.token_embedding.build((None, None))
        self.encoder.build(hidden_shape)
        if self.decoder is not None:
            self.decoder.build(hidden_shape, hidden_shape)
        if self.lm_head is not None:
            self.lm_head.build(hidden_shape)
        self.built = True

    def get_config(self):
        config = {
            "config": self.config.to_dict(),
            "name": self.name,
            # `.keras` files restore variables by shape and order; this marks files whose
            # projection kernels are stored [out, in] (see `Dense.kernel_layout`).
            "projection_kernel_layout": PROJECTION_KERNEL_LAYOUT,
            "lm_head_layout": self.lm_head_layout,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
        }
        if self.has_lm_head and self.weight_quantization:
            config["weight_quantization"] = self.weight_quantization
        if self.head_screen is not None:
            config["head_screening_candidates"] = self.head_screen.candidates
        generation_config = self.__dict__.get("_generation_config")
        if generation_config is not None:  # a checkpoint's generation_config.json, or set
            config["generation_config"] = generation_config.to_dict()
        # Frozen parts (by index in Keras' depth-first layer order: auto-generated names
        # differ between processes), so that a resumed `fit` trains the same variables and
        # the saved optimizer state fits them.
        frozen = [index for index, layer in enumerate(self._flatten_layers(include_self=False))
                  if not layer.trainable]
        if frozen:
            config["frozen_sublayers"] = frozen
        if not self.trainable:
            config["trainable"] = False
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        layout = config.pop("projection_kernel_layout", "in_out")
        if layout != PROJECTION_KERNEL_LAYOUT:
            raise ValueError(
                f"This saved {cls.__name__} stores its projection kernels {layout!r}; this "
                f"version of tfmodels stores them {PROJECTION_KERNEL_LAYOUT!r} and cannot "
                "restore it. Load it with the tfmodels version that wrote it and re-save it "
                "with save_pretrained(), which every version reads."
            )
        model_config = cls.config_class.from_dict(config.pop("config"))
        trainable = config.pop("trainable", True)
        dtype = config.pop("dtype", None)
        # Files written before the option existed stored the head [d_model, vocab].
        model = cls(model_config, name=config.get("name"), dtype=dtype,
                    lm_head_layout=config.get("lm_head_layout", "in_out"))
        if config.get("weight_quantization"):
            # Creates the int8 variables, which a `.keras` file restores after this.
            model.quantize_weights(config["weight_quantization"])
        if config.get("head_screening_candidates"):
            # Its variables are restored after this too.
            model.enable_head_screening(config["head_screening_candidates"])
        if config.get("generation_config") is not None:
            from tfmodels.generation import GenerationConfig

            model.generation_config = GenerationConfig.from_dict(config["generation_config"])
        frozen = set(config.get("frozen_sublayers", ()))
        if frozen:
            sublayers = list(model._flatten_layers(include_self=False))
            if max(frozen) >= len(sublayers):
                raise ValueError(
                    f"frozen_sublayers {sorted(frozen)} name layers this {cls.__name__} "
                    f"(with {len(sublayers)} sublayers) does not have"
                )
            # Depth-first: a layer's flag (which Keras copies to its sublayers) is set
            # before its sublayers' own flags.
            for index, layer in enumerate(sublayers):
                layer.trainable = index not in frozen
        if not trainable:
            model.trainable = False
        return model

    def get_build_config(self):
        return {}

    def serving_input_signature(self):
        """`{name: TensorSpec([None, None], int32)}` of a forward call's token inputs: what
        `model.export(path)` and `tf.saved_model.save(model, path)` serve by default
        (text in, generated text out: `savedmodel/`)."""
        names = ["input_ids", "attention_mask"]
        if self.decoder is not None:
            names.append("decoder_input_ids")
        return {name: tf.TensorSpec([None, None], tf.int32, name=name) for name in names}

    def export(self, filepath, format="tf_saved_model", verbose=None, input_signature=None,
               **kwargs):
        # Built at construction, the model has no recorded call shapes for Keras to use.
        if input_signature is None and format == "tf_saved_model":
            input_signature = [self.serving_input_signature()]
        return super().export(filepath, format=format, verbose=verbose,
                              input_signature=input_signature, **kwargs)

    @property
    def _default_save_signature(self):
        """`tf.saved_model.save(model, path)`'s `serving_default`: the forward pass on
        `serving_input_signature()` (Keras would find no recorded call shapes)."""

        @tf.function(input_signature=[self.serving_input_signature()])
        def serving_default(inputs):
            return {key: value for key, value in self(inputs).items() if value is not None}

        return serving_default

    def build_from_config(self, config):
        self.build()

    # -- the forward pass -----------------------------------------------------------------
    def encode(self, input_ids, attention_mask=None, training=False,
               output_hidden_states=False, output_attentions=False):
        """Runs the encoder; returns its output dict (`last_hidden_state`, ...)."""
        input_ids = as_id_tensor("input_ids", input_ids, vocab_size=self.config.vocab_size)
        attention_mask = _check_same_shape("attention_mask", as_id_tensor(
            "attention_mask", attention_mask, required=False), "input_ids", input_ids)
        return self.encoder(
            self.embed_inputs(input_ids, is_decoder=False),
            padding_mask=attention_mask,
            training=training,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
        )

    def decode(self, decoder_input_ids, encoder_hidden_states, encoder_attention_mask=None,
               decoder_attention_mask=None, training=False, output_hidden_states=False,
               output_attentions=False):
        """Runs the decoder over a whole (teacher-forced) sequence."""
        decoder_input_ids = as_id_tensor(
            "decoder_input_ids", decoder_input_ids, vocab_size=self.config.vocab_size)
        decoder_attention_mask = _check_same_shape("decoder_attention_mask", as_id_tensor(
            "decoder_attention_mask", decoder_attention_mask, required=False),
            "decoder_input_ids", decoder_input_ids)
        return self.decoder(
            self.embed_inputs(decoder_input_ids, is_decoder=True),
            padding_mask=decoder_attention_mask,
            encoder_hidden_states=encoder_hidden_states,
            encoder_padding_mask=encoder_attention_mask,
            training=training,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
        )

    def compute_logits(self, decoder_hidden_states):
        """LM head: float32 logits `[batch, length, vocab]`."""
        if self.lm_head is not None:
            logits = self.lm_head(decoder_hidden_states)
        else:
            decoder_hidden_states = self.tied_head_inputs(decoder_hidden_states)
            if self.int8_tied_head is not None:
                return tf.cast(self.int8_tied_head(decoder_hidden_states), tf.float32)
            embedding_matrix = tf.cast(self.token_embedding.embeddings, decoder_hidden_states.dtype)
            logits = tf.matmul(decoder_hidden_states, embedding_matrix, transpose_b=True)
        return tf.cast(logits, tf.float32)

    def call(
        self,
        input_ids=None,
        attention_mask=None,
        decoder_input_ids=None,
        decoder_attention_mask=None,
        labels=None,
        encoder_outputs=None,
        training=False,
        output_hidden_states=False,
        output_attentions=False,
    ):
        input_ids, extra = _unpack_inputs(
            input_ids,
            dict(
                attention_mask=attention_mask,
                decoder_input_ids=decoder_input_ids,
                decoder_attention_mask=decoder_attention_mask,
                labels=labels,
            ),
        )
        attention_mask = extra.get("attention_mask")
        decoder_input_ids = extra.get("decoder_input_ids")
        decoder_attention_mask = extra.get("decoder_attention_mask")
        labels = extra.get("labels")
        if attention_mask is not None:
            attention_mask = as_id_tensor("attention_mask", attention_mask)

        if encoder_outputs is None:
            encoder_outputs = self.encode(
                input_ids,
                attention_mask,
                training=training,
                output_hidden_states=output_hidden_states,
                output_attentions=output_attentions,
            )
        elif tf.is_tensor(encoder_outputs):
            encoder_outputs = {"last_hidden_state": encoder_outputs}
        if self.decoder is None:
            return ModelOutput(**encoder_outputs)

        if labels is not None:
            labels = as_id_tensor("labels", labels, vocab_size=self.config.vocab_size)
            batch, labels_batch = encoder_outputs["last_hidden_state"].shape[0], labels.shape[0]
            if None not in (batch, labels_batch) and batch != labels_batch:
                raise ValueError(f"labels hold {labels_batch} rows for a batch of {batch} inputs")
            if decoder_input_ids is None:
                decoder_input_ids = shift_tokens_right(
                    labels, self.config.pad_token_id, self.config.decoder_start_token_id
                )
        if decoder_input_ids is None:
            raise ValueError(
                "decoder_input_ids are required when no labels are given "
                "(pass labels to derive them by shifting right, or call generate())"
            )
        decoder_outputs = self.decode(
            decoder_input_ids,
            encoder_outputs["last_hidden_state"],
            encoder_attention_mask=attention_mask,
            decoder_attention_mask=decoder_attention_mask,
            training=training,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
        )
        result = ModelOutput()
        if self.has_lm_head:
            logits = self.compute_logits(decoder_outputs["last_hidden_state"])
            if labels is not None:
                result["loss"] = masked_token_loss(labels, logits)
            result["logits"] = logits
        else:
            result["last_hidden_state"] = decoder_outputs["last_hidden_state"]
        for key in ("hidden_states", "attentions", "cross_attentions"):
            if key in decoder_outputs:
                result["decoder_" + key if key != "cross_attentions" else key] = decoder_outputs[key]
        result["encoder_last_hidden_state"] = encoder_outputs["last_hidden_state"]
        for key in ("hidden_states", "attentions"):
            if key in encoder_outputs:
                result["encoder_" + key] = encoder_outputs[key]
        return result

    # -- int8 inference -------------------------------------------------------------------
    def quantized_dense_layers(self, mode=None):
        """The projections `quantize_weights(mode)` converts (`mode` defaults to the
        model's current one, or `"int8"` for a float model): every `Dense` of the decoder
        (the weights each decoding step reads) and an untied LM head, then with
        `"int8_dynamic"` every `Dense` of the encoder as well.

        The encoder runs once per call on all source tokens, so its products have many
        rows, where weight-only int8 gains nothing (its float product is compute-bound)
        while XLA's int8 product of int8 inputs is 1.4-1.6x faster than float32 (2
        threads, m2m100's 1024- and 4096-wide projections at 256 rows).
        """
        mode = mode or self.weight_quantization or "int8"
        layers = self._dense_layers_of(self.decoder)
        if self.lm_head is not None:
            layers.append(self.lm_head)
        if mode == "int8_dynamic":
            layers += self._dense_layers_of(self.encoder)
        return layers

    @staticmethod
    def _dense_layers_of(stack):
        if stack is None:
            return []
        return [layer for layer in stack._flatten_layers(include_self=False)
                if isinstance(layer, Dense)]

    def quantize_weights(self, mode="int8"):
        """Int8 inference: the decoder's projections and the LM head (tied or not) are
        read from int8 copies with one float32 scale per output channel, a quarter of the
        bytes each decoding step reads.

        `"int8"` (weight-only) keeps the activations, norms, attention and encoder in the
        model's dtype. `"int8_dynamic"` also quantises the inputs of those projections,
        each row to int8 with its own scale taken at run time, so that products of several
        rows (batches, beams) run as int8 products under XLA (see `Int8Matrix`): faster
        than weight-only int8 at 2+ rows, at the cost of the inputs' rounding error. It
        converts the encoder's projections the same way (as CTranslate2's int8 does).

        Call it after loading the weights (it quantises their current values; call it
        again after changing them, which `load_hf_state_dict`, `load_weights` and
        `set_weights` do: `remake_weight_copies`). The float weights stay in the model:
        checkpoints (`save_pretrained`) write them, and `remove_weight_quantization()`
        goes back to them, e.g. before training, which a quantised model refuses.

        Example (the bundled translator):
        >>> from tfmodels import BUNDLED_TRANSLATOR_DIR, M2M100ForConditionalGeneration
        >>> from tfmodels.tokenizers import M2M100Tokenizer
        >>> model = M2M100ForConditionalGeneration.from_pretrained(BUNDLED_TRANSLATOR_DIR)
        >>> tokenizer = M2M100Tokenizer.from_pretrained(BUNDLED_TRANSLATOR_DIR, src_lang="en")
        >>> batch = tokenizer(["Switzerland", "January"])
        >>> model.quantize_weights("int8_dynamic")
        >>> ids = model.generate(batch["input_ids"], attention_mask=batch["attention_mask"],
        ...                      num_beams=4, forced_bos_token_id=tokenizer.get_lang_id("de"))
        >>> tokenizer.detokenize(ids, skip_special_tokens=True).numpy().tolist()
        [b'Schweiz', b'Januar']
        >>> model.remove_weight_quantization()   # back to the float weights
        """
        check_weight_quantization_mode(mode)
        if not self.has_lm_head:
            raise ValueError(f"{type(self).__name__} has no decoder head to quantise")
        # An int8 head has nothing left to screen.
        self.disable_head_screening()
        converted = self.quantized_dense_layers(mode)
        if self.weight_quantization:
            # The modes convert different layers (the encoder only with "int8_dynamic"):
            # layers outside the new set go back to float; the others keep their int8
            # variables, re-assigned below.
            for layer in self.quantized_dense_layers():
                if layer not in converted:
                    layer.remove_weight_quantization()
        for layer in converted:
            layer.quantize_weights(mode)
        if self.lm_head is None:
            embeddings = self.token_embedding.embeddings
            matrix = attach_int8_matrix(self, "int8_tied_head", *embeddings.shape,
                                        quantize_inputs=mode == "int8_dynamic")
            matrix.assign(embeddings)
        self._forget_compiled_functions()

    def remove_weight_quantization(self):
        """Back to the float weights for every layer `quantize_weights` converted."""
        for layer in self.quantized_dense_layers():
            layer.remove_weight_quantization()
        detach_sublayer(self, "int8_tied_head")
        self._forget_compiled_functions()

    def int8_matrices(self):
        """The `Int8Matrix` layers `quantize_weights` created (empty when not quantised)."""
        matrices = [layer.int8_kernel for layer in self.quantized_dense_layers()
                    if layer.int8_kernel is not None]
        if self.int8_tied_head is not None:
            matrices.append(self.int8_tied_head)
        return matrices

    @property
    def weight_quantization(self):
        """The mode of the last `quantize_weights` call (`"int8"`, `"int8_dynamic"`), or
        None for float weights."""
        layers = self._dense_layers_of(self.decoder)
        if not layers and self.lm_head is not None:
            layers = [self.lm_head]
        return layers[0].weight_quantization if layers else None

    # -- exact greedy decoding through an int8 screen of the LM head -----------------------
    def float_head_matrix(self):
        """The `[vocab, d_model]` float variable that is the whole LM head (an untied
        `"out_in"` head without bias, or the tied embeddings), or None (an `"in_out"`
        head, or one `quantize_weights` replaced)."""
        if not self.has_lm_head:
            return None
        if self.lm_head is not None:
            head = self.lm_head
            if head.int8_kernel is not None or head.kernel_layout != "out_in" or head.use_bias:
                return None
            return head.kernel
        if self.int8_tied_head is not None:
            return None
        return self.token_embedding.embeddings

    def enable_head_screening(self, candidates=None):
        """Faster greedy decoding with the float head's exact tokens: each greedy step
        bounds every logit from an int8 copy of the LM head (a quarter of its bytes), scores
        only the few tokens that can win with the float weights, and takes the float head
        itself at any step where the bound cannot decide (`generation.screening`).

        It applies to greedy search without sampling or `output_vocabulary`, compiled
        with XLA (the default), in float32; other searches read the float head as before.
        The int8 copy is a snapshot, like `quantize_weights`: call this again after
        changing the weights (`load_hf_state_dict`, `load_weights` and `set_weights` do;
        training refuses while it is on). It costs a quarter of the head's memory
        (mt5-small: 128 MB) and about a second to make (2 threads).
        `candidates` (default `screened_head.DEFAULT_CANDIDATES`): tokens per row scored
        with the float head; fewer make a step cheaper and undecided steps (which take
        the float head) likelier.

        Example (the bundled translator; greedy search, as screening needs):
        >>> from tfmodels import BUNDLED_TRANSLATOR_DIR, M2M100ForConditionalGeneration
        >>> from tfmodels.tokenizers import M2M100Tokenizer
        >>> model = M2M100ForConditionalGeneration.from_pretrained(BUNDLED_TRANSLATOR_DIR)
        >>> tokenizer = M2M100Tokenizer.from_pretrained(BUNDLED_TRANSLATOR_DIR, src_lang="en")
        >>> batch = tokenizer(["Switzerland", "January"])
        >>> model.enable_head_screening()
        >>> ids = model.generate(batch["input_ids"], attention_mask=batch["attention_mask"],
        ...                      num_beams=1, forced_bos_token_id=tokenizer.get_lang_id("de"))
        >>> tokenizer.detokenize(ids, skip_special_tokens=True).numpy().tolist()
        [b'Schweiz', b'Januar']
        """
        from tfmodels.layers.screened_head import DEFAULT_CANDIDATES, ScreenedHead

        matrix = self.float_head_matrix()
        if matrix is None:
            if not self.has_lm_head:
                raise ValueError(f"{type(self).__name__} has no LM head to screen")
            raise ValueError(
                "head screening needs the float LM head stored [vocab, d_model] without bias: "
                "a model built with lm_head_layout='out_in' (the default) and not quantised "
                f"(weight_quantization is {self.weight_quantization!r})"
            )
        if self.compute_dtype != "float32":
            raise ValueError(
                f"head screening gives float32 greedy tokens; this model computes in "
                f"{self.compute_dtype}"
            )
        candidates = DEFAULT_CANDIDATES if candidates is None else candidates
        if self.head_screen is not None and self.head_screen.candidates != candidates:
            detach_sublayer(self, "head_screen")
        if self.head_screen is None:
            attach_sublayer(self, "head_screen", ScreenedHead(
                *matrix.shape, candidates=candidates, dtype="float32", name="head_screen"))
        self.head_screen.assign(matrix)
        self._forget_compiled_functions()

    def disable_head_screening(self):
        """Greedy search reads the float LM head again (and the int8 copy is dropped)."""
        if self.head_screen is not None:
            detach_sublayer(self, "head_screen")
            self._forget_compiled_functions()

    def remake_weight_copies(self):
        """Makes the copies taken from the float weights (`quantize_weights`' int8 copies,
        the head's screen) again from their current values, in the same mode and with the
        same settings; a model without them is left as it is.

        `load_hf_state_dict`, `load_weights` and `set_weights` call it. Call it yourself
        after assigning float variables directly."""
        if self.weight_quantization:
            self.quantize_weights(self.weight_quantization)
        elif self.head_screen is not None:
            self.enable_head_screening(self.head_screen.candidates)

    def load_weights(self, filepath, *args, **kwargs):
        """Keras' `load_weights`, then `remake_weight_copies()`, so that the int8 copies
        and the head's screen stand for the loaded float weights. A file saved from a
        model without those copies loads too (Keras would refuse it for the copies'
        missing variables, after loading the float ones). A load that fails still
        remakes them, from the float weights Keras loaded before it raised."""
        try:
            with weights_file_may_lack_copies():
                super().load_weights(filepath, *args, **kwargs)
        finally:
            self.remake_weight_copies()

    def set_weights(self, weights):
        """Keras' `set_weights`, then `remake_weight_copies()` (the copies follow the float
        weights, whatever the list held for them). A list of the float weights alone (the
        `get_weights()` of a model without int8 copies or a head screen) is taken too."""
        copy_layers = self.int8_matrices()
        if self.head_screen is not None:
            copy_layers.append(self.head_screen)
        copies = {id(variable) for layer in copy_layers for variable in layer.weights}
        float_weights = [variable for variable in self.weights if id(variable) not in copies]
        if copies and len(weights) == len(float_weights):
            for variable, value in zip(float_weights, weights):
                if tuple(variable.shape) != tuple(np.shape(value)):
                    raise ValueError(
                        f"set_weights: {variable.path} has shape {tuple(variable.shape)}, "
                        f"the value given for it {tuple(np.shape(value))}")
                variable.assign(value)
        else:
            super().set_weights(weights)
        self.remake_weight_copies()

    def _forget_compiled_functions(self):
        # Compiled searches captured the previous weights' code path.
        from tfmodels.generation.generate import clear_compiled_functions

        clear_compiled_functions(self)
        # Keras's cached fit / evaluate / predict functions too.
        self.train_function = self.test_function = self.predict_function = None

    # -- incremental decoding (what generation drives) ------------------------------------
    def init_decoding_cache(self, encoder_hidden_states, max_length, cache_dtype=None):
        """Zeroed self-attention caches for `max_length` decoder positions plus the
        cross-attention keys/values projected once from the encoder output.

        Returns `{"self": [(key, value)] * layers, "cross": [(key, value)] * layers}` with
        every tensor `[batch, heads, length, head_dim]`.
        """
        cache_dtype = cache_dtype or self.compute_dtype
        batch = dimension(encoder_hidden_states, 0)
        heads = self.decoder.num_heads
        shape = [batch, heads, max_length, self.decoder.head_dim]
        self_caches, cross_caches = [], []
        for layer in self.decoder.transformer_layers:
            self_caches.append((tf.zeros(shape, cache_dtype), tf.zeros(shape, cache_dtype)))
            cross_caches.append(layer.cross_attention.project_key_value(encoder_hidden_states))
        return {"self": self_caches, "cross": cross_caches}

    def decode_step(self, decoder_input_ids, cache, cache_index, encoder_attention_mask=None,
                    decoder_padding_mask=None, return_hidden_states=False, past_length=None):
        """Runs `[batch, new_len]` decoder tokens at positions `cache_index...` against the
        cache. Returns `(logits [batch, new_len, vocab] float32, updated cache)`;
        `decoder_padding_mask` (`[batch, max_length]`) marks cache slots to ignore. The
        cross-attention cache and `encoder_attention_mask` may have one row per group of
        consecutive batch rows (a search's beams of one input), shared by the group.
        `past_length` (scalar or `[batch, 1]` int32, default `cache_index`) is how many
        earlier tokens absolute positions count (see `positions_skip_pad_tokens`)."""
        decoder_input_ids = tf.cast(decoder_input_ids, tf.int32)
        _check_cache_room(cache, cache_index, decoder_input_ids.shape[1])
        if past_length is None:
            past_length = cache_index
        outputs = self.decoder(
            self.embed_inputs(decoder_input_ids, is_decoder=True, past_length=past_length),
            padding_mask=decoder_padding_mask,
            encoder_padding_mask=encoder_attention_mask,
            self_attention_caches=cache["self"],
            cross_attention_caches=cache["cross"],
            cache_index=cache_index,
        )
        hidden = outputs["last_hidden_state"]
        new_cache = {"self": outputs["caches"], "cross": cache["cross"]}
        if return_hidden_states:
            return hidden, new_cache
        return self.compute_logits(hidden), new_cache

    # -- generation -----------------------------------------------------------------------
    @property
    def generation_config(self):
        """The default `GenerationConfig` of `generate`: the checkpoint's
        `generation_config.json` when `from_pretrained` found one, else derived from the
        model config as the reference does."""
        config = self.__dict__.get("_generation_config")
        if config is None and self.has_lm_head:
            from tfmodels.generation import GenerationConfig

            config = GenerationConfig.from_model_config(self.config)
            self.__dict__["_generation_config"] = config
        return config

    @generation_config.setter
    def generation_config(self, value):
        self.__dict__["_generation_config"] = value

    def generate(self, input_ids=None, attention_mask=None, generation_config=None, **kwargs):
        """Generates token ids (greedy, beam search or sampling) as one compiled graph.

        See `tfmodels.generation.generate` for the options; they are the reference's.

        Example (the bundled translator, English -> German):
        >>> from tfmodels import BUNDLED_TRANSLATOR_DIR, M2M100ForConditionalGeneration
        >>> from tfmodels.tokenizers import M2M100Tokenizer
        >>> model = M2M100ForConditionalGeneration.from_pretrained(BUNDLED_TRANSLATOR_DIR)
        >>> tokenizer = M2M100Tokenizer.from_pretrained(BUNDLED_TRANSLATOR_DIR, src_lang="en")
        >>> batch = tokenizer(["Switzerland", "January"])
        >>> sequences = model.generate(batch["input_ids"], attention_mask=batch["attention_mask"],
        ...                            num_beams=4, max_new_tokens=32,
        ...                            forced_bos_token_id=tokenizer.get_lang_id("de"))
        >>> sequences[:, :2].numpy().tolist() == [[2, tokenizer.get_lang_id("de")]] * 2
        True
        >>> tokenizer.detokenize(sequences, skip_special_tokens=True).numpy().tolist()
        [b'Schweiz', b'Januar']
        """
        from tfmodels.generation import generate

        return generate(self, input_ids, attention_mask, generation_config, **kwargs)

    # -- Hugging Face checkpoints ---------------------------------------------------------
    def _sublayers_by_role(self):
        """Yields `(role, stack_name, layer_index, keras_layer)` for every weighted sublayer."""
        yield "shared", None, None, self.token_embedding
        if self.lm_head is not None:
            yield "lm_head", None, None, self.lm_head
        for stack_name, stack in (("encoder", self.encoder), ("decoder", self.decoder)):
            if stack is None:
                continue
            if stack.relative_position_bias is not None:
                yield "relative_position_bias", stack_name, None, stack.relative_position_bias
            yield "final_norm", stack_name, None, stack.final_norm
            for index, layer in enumerate(stack.transformer_layers):
                attentions = [("self_attention", layer.self_attention)]
                norms = [("self_attention_norm", layer.self_attention_norm)]
                if layer.cross_attention is not None:
                    attentions.append(("cross_attention", layer.cross_attention))
                    norms.append(("cross_attention_norm", layer.cross_attention_norm))
                norms.append(("feed_forward_norm", layer.feed_forward_norm))
                for role, norm in norms:
                    yield role, stack_name, index, norm
                for prefix, attention in attentions:
                    for part in ("query", "key", "value", "output"):
                        dense = getattr(attention, part + "_dense")
                        yield f"{prefix}.{part}", stack_name, index, dense
                ffn = layer.feed_forward
                for part in ("intermediate", "linear", "output"):
                    dense = getattr(ffn, part + "_dense")
                    if dense is not None:
                        yield f"feed_forward.{part}", stack_name, index, dense

    def hf_weight_names(self):
        """Yields `(hf_name, variable, transpose)` for every weight of the model."""
        for role, stack_name, index, sublayer in self._sublayers_by_role():
            module = self.hf_module_name(role, stack_name, index)
            for suffix, variable, transpose in _reference_parameters(sublayer):
                yield f"{module}.{suffix}", variable, transpose

    def _weight_table(self):
        return {name: (variable, transpose) for name, variable, transpose in self.hf_weight_names()}

    def load_hf_state_dict(self, tensors):
        """Assigns reference-named, PyTorch-layout numpy tensors to the model's variables.

        Missing, unexpected and mis-shaped tensors are all reported in one ValueError.
        The copies made from the float weights (`quantize_weights`' int8 copies, the
        head's screen) are made again from the new ones, in the same mode: they would
        otherwise still stand for the weights they were made from.
        """
        from converters.state_dict import match_state_dict

        table = self._weight_table()
        expected_shapes = {
            name: tuple(reversed(variable.shape)) if transpose else tuple(variable.shape)
            for name, (variable, transpose) in table.items()
        }
        tensors = self._tensors_for_this_head(tensors)
        matched = match_state_dict(expected_shapes, tensors, self.hf_weight_aliases())
        for name, array in matched.items():
            variable, transpose = table[name]
            array = np.asarray(array)
            if transpose:
                array = array.T
            variable.assign(array.astype(variable.dtype))
        self.remake_weight_copies()

    def _tensors_for_this_head(self, tensors):
        """Lets any head load a checkpoint written for another head of the same family,
        as the reference does: an encoder-only model takes the encoder of a full
        checkpoint, a bare model that of an LM checkpoint (and the other way round, where
        the family prefixes its backbone with `model.`), and of the reference's task heads
        (`hf_task_backbone_prefix`, `hf_task_head_prefixes`). Only the parts this class
        does not have are dropped, and the family's `hf_ignored_tensor_names`; everything
        else stays subject to the strict check."""
        prefix = self.hf_prefix
        task_heads = tuple(self.hf_task_head_prefixes)
        backbone = self.hf_task_backbone_prefix
        if backbone and any(name.startswith(backbone) for name in tensors) and all(
                name.startswith((backbone, *task_heads)) for name in tensors):
            tensors = {(name[len(backbone):] if name.startswith(backbone) else name): value
                       for name, value in tensors.items()}
        names = list(tensors)
        if prefix and not any(name.startswith(prefix) for name in names):
            tensors = {
                (name if name.startswith("lm_head.") else prefix + name): value
                for name, value in tensors.items()
            }
        elif not prefix and names and all(
            name.startswith("model.") or name.startswith("lm_head.") for name in names
        ) and any(name.startswith("model.") for name in names):
            tensors = {
                (name[len("model."):] if name.startswith("model.") else name): value
                for name, value in tensors.items()
            }
        ignored = {prefix + name for name in self.hf_ignored_tensor_names}
        tensors = {name: value for name, value in tensors.items() if name not in ignored}
        absent_parts = list(task_heads)
        if self.decoder is None:
            absent_parts.append(prefix + "decoder.")
        if not self.has_lm_head:
            absent_parts.append("lm_head.")
        if absent_parts:
            tensors = {
                name: value
                for name, value in tensors.items()
                if not name.startswith(tuple(absent_parts))
            }
        return tensors

    def hf_state_dict(self):
        """The model's weights as reference-named, PyTorch-layout numpy arrays."""
        tensors = {}
        for name, (variable, transpose) in self._weight_table().items():
            array = np.asarray(variable.numpy())
            tensors[name] = np.ascontiguousarray(array.T if transpose else array)
        return tensors

    @classmethod
    def from_pretrained(cls, directory, allow_bin=False, dtype=None, **kwargs):
        """Builds the model from `directory/config.json` and loads its weights from
        `model.safetensors` (sharded too), `tf_model.h5`, or — only with
        `allow_bin=True`, since it unpickles — `pytorch_model.bin`.

        Example (a checkpoint written by `save_pretrained`, then read back):
        >>> import tempfile
        >>> from tfmodels import MT5Config, MT5ForConditionalGeneration
        >>> config = MT5Config(vocab_size=64, d_model=16, d_kv=4, d_ff=32, num_layers=1,
        ...                    num_heads=2)
        >>> directory = tempfile.mkdtemp()
        >>> MT5ForConditionalGeneration(config).save_pretrained(directory)
        >>> model = MT5ForConditionalGeneration.from_pretrained(directory)
        >>> model.config.d_model, model.count_params()
        (16, 6896)
        """
        from converters.checkpoint_files import read_checkpoint

        config = cls.config_class.from_pretrained(directory)
        model = cls(config, dtype=dtype, **kwargs)
        tensors, _ = read_checkpoint(directory, allow_bin=allow_bin)
        try:
            model.load_hf_state_dict(tensors)
        except ValueError as error:
            raise ValueError(
                f"Checkpoint {directory!r} does not match its config.json for "
                f"{cls.__name__}:\n{error}"
            ) from None
        if model.has_lm_head:
            from tfmodels.generation import GENERATION_CONFIG_NAME, GenerationConfig

            if os.path.isfile(os.path.join(directory, GENERATION_CONFIG_NAME)):
                model.generation_config = GenerationConfig.from_pretrained(directory)
        return model

    def save_pretrained(self, directory, max_shard_size=None):
        """Writes `config.json` + `model.safetensors` (+ `generation_config.json` for
        models with an LM head) in the reference layout."""
        from converters.checkpoint_files import write_checkpoint

        os.makedirs(directory, exist_ok=True)
        tensors = self.hf_state_dict()
        # `dtype` names the tensors written (transformers' `dtype="auto"` loads in it),
        # not the one the checkpoint was read from.
        weights_dtype = next(iter(tensors.values())).dtype.name
        # `architectures` names this head, as the reference writes it (a bare model saved
        # from a full checkpoint is not a ...ForConditionalGeneration).
        self.config.save_pretrained(directory, weights_dtype=weights_dtype,
                                    architecture=type(self).__name__)
        if self.has_lm_head:
            self.generation_config.save_pretrained(directory)
        write_checkpoint(directory, tensors, max_shard_size=max_shard_size)


def _reference_parameters(layer):
    """`(suffix, variable, transpose)` for one sublayer in PyTorch naming and layout."""
    if isinstance(layer, keras.layers.Dense):
        # torch.nn.Linear weights are [out, in]; Keras kernels [in, out] unless stored "out_in".
        stored_out_in = getattr(layer, "kernel_layout", "in_out") == "out_in"
        params = [("weight", layer.kernel, not stored_out_in)]
        if layer.use_bias:
            params.append(("bias", layer.bias, False))
        return params
    if isinstance(layer, keras.layers.LayerNormalization):
        return [("weight", layer.gamma, False), ("bias", layer.beta, False)]
    if isinstance(layer, keras.layers.Embedding):
        return [("weight", layer.embeddings, False)]
    if isinstance(layer, RMSNorm):
        return [("weight", layer.scale, False)]
    if isinstance(layer, RelativePositionBias):
        return [("weight", layer.embeddings, False)]
    raise TypeError(f"No reference parameter layout for {type(layer).__name__}")


def _check_cache_room(cache, cache_index, new_len):
    """Raises when `new_len` tokens written at a known `cache_index` would not fit the
    self-attention cache: XLA's in-place write would clamp the position and overwrite
    earlier slots, the plain graph's select would drop the tokens. (A `cache_index` known
    only at run time, as in the compiled search, is sized by its caller.)"""
    index = tf.get_static_value(cache_index)
    if index is None or new_len is None or not cache["self"]:
        return
    cache_len = cache["self"][0][0].shape[2]
    index = int(index)
    if index < 0 or (cache_len is not None and index + new_len > cache_len):
        last_index = "cache_len - new_len" if cache_len is None else cache_len - new_len
        raise ValueError(
            f"decode_step: {new_len} token(s) at cache_index {index} do not fit a "
            f"{cache_len}-slot cache; make it with init_decoding_cache(..., max_length >= "
            f"{max(index, 0) + new_len}) or pass a cache_index in [0, {last_index}]"
        )
