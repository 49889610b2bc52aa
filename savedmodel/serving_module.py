"""The exported object: signatures that take raw text and return text, scores or vectors.

Signatures (inputs -> outputs; `[B]` is the batch of texts, `*` marks M2M100-only inputs,
which are a scalar or `[B]` strings):

| signature | inputs | outputs |
| --- | --- | --- |
| `serving_default` | `text` [B], `src_lang`*, `tgt_lang`* | `text` [B] string, `scores` [B] float32 |
| `generate_with_options` | as above + `max_new_tokens` int32, `min_new_tokens` int32, `length_penalty` float32 (each a scalar or the same value per example) | `text`, `scores` |
| `score` | `text` [B], `target` [B], `src_lang`*, `tgt_lang`* | `log_likelihood` [B] float32, `num_tokens` [B] int32 |
| `encode` | `text` [B], `src_lang`* | `embedding` [B, d_model] float32, `num_tokens` [B] int32 |
| `tokenize` | `text` [B], `src_lang`* | `input_ids` [B, L] int32, `attention_mask` [B, L] int32 |
| `detokenize` | `ids` [B, L] int32 | `text` [B] string |

With `ExportSettings.xla`, `serving_default_xla`, `generate_with_options_xla`, `score_xla`
and `encode_xla` take and return the same tensors, run the model part as an XLA program
(the strings parts cannot be compiled) and pad shapes to buckets.

The graph is built from shared building blocks (tokenization, the search, scoring,
detokenization are each one `tf.function`), so the SavedModel stores each once however
many signatures call it.
"""

import types

import tensorflow as tf

from savedmodel import model_graph, request_checks, xla_padding
from savedmodel.search_graph import ExportedSearch
from savedmodel.text_codec import TextCodec, tokenizer_resources
from tfmodels.generation.vocabulary import text_output_suppress_tokens

MODEL_SIGNATURES = ("serving_default", "generate_with_options", "score", "encode")
TEXT_SIGNATURES = ("tokenize", "detokenize")
XLA_SUFFIX = "_xla"


def signature_names(xla):
    """Every signature an export has, in a stable order."""
    names = list(MODEL_SIGNATURES) + list(TEXT_SIGNATURES)
    if xla:
        names += [name + XLA_SUFFIX for name in MODEL_SIGNATURES]
    return names


def _tf_variable(variable):
    """The `tf.Variable` behind a Keras 3 variable (what the traced graphs capture)."""
    value = getattr(variable, "value", variable)
    return value if isinstance(value, tf.Variable) else variable


def exported_weights(model):
    """The model's weights the signatures read: all of them, except the float kernels a
    weight-quantised model has int8 copies of (no signature reads those)."""
    replaced = set()
    if model.weight_quantization:
        replaced = {id(layer.kernel) for layer in model.quantized_dense_layers()}
    return [weight for weight in model.weights if id(weight) not in replaced]


class ServingModule(tf.Module):
    """Holds what the signatures read (variables, tokenizer tables) and builds them.

    Args:
        model: an mT5 / M2M100 `...ForConditionalGeneration`.
        tokenizer: its in-graph `T5Tokenizer` / `M2M100Tokenizer`.
        settings: an `ExportSettings` already resolved with `with_checkpoint_defaults`.

    Example (what `export_savedmodel` does, less its checks and warm-up):
    >>> import os, tempfile
    >>> from savedmodel.checkpoint import load_checkpoint
    >>> from savedmodel.export_settings import ExportSettings
    >>> from tfmodels import BUNDLED_TRANSLATOR_DIR
    >>> model, tokenizer = load_checkpoint(BUNDLED_TRANSLATOR_DIR)
    >>> settings = ExportSettings(max_new_tokens=16).with_checkpoint_defaults(model)
    >>> module = ServingModule(model, tokenizer, settings)
    >>> version_dir = os.path.join(tempfile.mkdtemp(), "1")
    >>> tf.saved_model.save(module, version_dir, signatures=module.signatures())
    >>> detokenize = tf.saved_model.load(version_dir).signatures["detokenize"]
    >>> ids = tokenizer(["January"], src_lang="en")["input_ids"]
    >>> detokenize(ids=ids)["text"].numpy().tolist()
    [b'January']
    """

    def __init__(self, model, tokenizer, settings):
        super().__init__(name="tfmodels_serving")
        codec = TextCodec(tokenizer, settings.max_source_length, settings.max_target_length)
        # Ids the model has rows for but the tokenizer cannot write out (a vocabulary padded
        # past the tokenizer) are never generated, so no request fails on them; the
        # checkpoint's own suppressed tokens stay suppressed.
        suppressed = text_output_suppress_tokens(model, tokenizer)

        def search_for(max_new_tokens=None):
            options = settings.generation_options(max_new_tokens)
            if suppressed:
                options["suppress_tokens"] = suppressed
            return ExportedSearch(model, options)

        default_search = search_for()
        if settings.max_new_tokens_limit == settings.max_new_tokens:
            options_search = default_search
        else:
            options_search = search_for(settings.max_new_tokens_limit)
        # Plain Python state, kept out of SavedModel tracking on purpose: the graphs
        # capture the model's variables, which are tracked below, not the Keras objects.
        self._parts = types.SimpleNamespace(
            model=model,
            codec=codec,
            settings=settings,
            searches={"serving_default": default_search, "generate_with_options": options_search},
            blocks={},
        )
        self.model_variables = [_tf_variable(v) for v in exported_weights(model)]
        self.tokenizer_resources = tokenizer_resources(tokenizer)

    # -- public ---------------------------------------------------------------------------
    @property
    def codec(self):
        """The `TextCodec` (tokenizer + truncation limits) the signatures use."""
        return self._parts.codec

    @property
    def uses_languages(self):
        return self._parts.codec.uses_languages

    def signatures(self):
        """`{name: concrete function}` for `tf.saved_model.save(..., signatures=...)`."""
        settings = self._parts.settings
        functions = {
            "serving_default": self._generation_signature("serving_default", False, False),
            "generate_with_options": self._generation_signature("generate_with_options", True, False),
            "score": self._score_signature(False),
            "encode": self._encode_signature(False),
            "tokenize": self._tokenize_signature(),
            "detokenize": self._detokenize_signature(),
        }
        if settings.xla:
            functions.update(
                serving_default_xla=self._generation_signature("serving_default", False, True),
                generate_with_options_xla=self._generation_signature("generate_with_options", True, True),
                score_xla=self._score_signature(True),
                encode_xla=self._encode_signature(True),
            )
        return {name: functions[name] for name in signature_names(settings.xla)}

    # -- input specs ----------------------------------------------------------------------
    def _text_specs(self, *names, languages=()):
        specs = {name: tf.TensorSpec([None], tf.string, name=name) for name in names}
        if self.uses_languages:
            specs.update({name: tf.TensorSpec(None, tf.string, name=name) for name in languages})
        return specs

    @staticmethod
    def _concrete(body, specs):
        """A concrete function taking the named `specs` as keyword inputs."""
        names = list(specs)

        def function(*args):
            return body(dict(zip(names, args)))

        traced = tf.function(function, input_signature=list(specs.values()), autograph=False)
        return traced.get_concrete_function()

    # -- building blocks (one tf.function each, shared by the signatures) ------------------
    def _block(self, key, build):
        blocks = self._parts.blocks
        if key not in blocks:
            blocks[key] = build()
        return blocks[key]

    def _text_function(self, key, method):
        """`method(texts[, codes])` of the codec as one shared tf.function (the language
        codes argument exists for M2M100 only)."""
        uses_languages = self.uses_languages

        def build():
            specs = [tf.TensorSpec([None], tf.string)]
            if uses_languages:
                specs.append(tf.TensorSpec([None], tf.string))
                return tf.function(method, input_signature=specs, autograph=False)

            def without_languages(texts):
                return method(texts)

            return tf.function(without_languages, input_signature=specs, autograph=False)

        return self._block(key, build)

    def _encode_sources(self, texts, src_lang):
        function = self._text_function("encode_sources", self._parts.codec.encode_sources)
        return function(texts, src_lang) if self.uses_languages else function(texts)

    def _encode_targets(self, texts, tgt_lang):
        function = self._text_function("encode_targets", self._parts.codec.encode_targets)
        return function(texts, tgt_lang) if self.uses_languages else function(texts)

    def _decode(self, ids):
        function = self._block(
            "decode",
            lambda: tf.function(
                self._parts.codec.decode,
                input_signature=[tf.TensorSpec([None, None], tf.int32)],
                autograph=False,
            ),
        )
        return function(ids)

    def _search_block(self, search_name, xla):
        search = self._parts.searches[search_name]
        model = self._parts.model
        greedy = search.plan.num_beams == 1

        def generate_ids(input_ids, attention_mask, is_active, forced_bos_token_id, *knobs):
            sequences, scores, lengths = search.run(
                input_ids, attention_mask, is_active, forced_bos_token_id, knobs
            )
            if greedy:  # greedy search has no sequence scores: rescore the output
                scores = model_graph.generated_log_likelihood(
                    model, input_ids, attention_mask, sequences, lengths
                )
            return sequences, scores, lengths

        def build():
            return tf.function(
                generate_ids,
                input_signature=[
                    tf.TensorSpec([None, None], tf.int32),
                    tf.TensorSpec([None, None], tf.int32),
                    tf.TensorSpec([None], tf.bool),
                    tf.TensorSpec([None], tf.int32),
                ] + search.knob_signature(),
                jit_compile=xla,
                autograph=False,
            )

        # Searches with the same plan share one function.
        return self._block(("search", id(search), xla), build), search

    def _model_function(self, name, compute, num_inputs, xla):
        """`compute(model, *int32 [batch, length] tensors)` as one shared tf.function."""
        model = self._parts.model

        def build():
            def run(*tensors):
                return compute(model, *tensors)

            run.__name__ = name + ("_xla" if xla else "")  # its name in the function library
            return tf.function(
                run,
                input_signature=[tf.TensorSpec([None, None], tf.int32)] * num_inputs,
                jit_compile=xla,
                autograph=False,
            )

        return self._block((name, xla), build)

    def _score_block(self, xla):
        return self._model_function("target_log_likelihood", model_graph.target_log_likelihood, 4, xla)

    def _encode_block(self, xla):
        return self._model_function("mean_pooled_encoding", model_graph.mean_pooled_encoding, 2, xla)

    # -- shared request handling ----------------------------------------------------------
    def _languages(self, inputs, batch_size, *names):
        if not self.uses_languages:
            return [None] * len(names)
        return [request_checks.per_example_strings(inputs[name], batch_size, name) for name in names]

    def _xla_rows(self, batch_size, signature_name):
        settings = self._parts.settings
        batch_size = request_checks.check_batch_size(batch_size, settings.max_batch_size, signature_name)
        return xla_padding.bucket_for(batch_size, settings.batch_buckets)

    def _padded_sources(self, input_ids, attention_mask, rows):
        settings = self._parts.settings
        columns = xla_padding.bucket_for(tf.shape(input_ids)[1], settings.source_buckets)
        pad_id = self._parts.codec.pad_token_id
        input_ids = xla_padding.pad_columns(xla_padding.pad_rows(input_ids, rows), columns, pad_id)
        attention_mask = xla_padding.pad_columns(xla_padding.pad_rows(attention_mask, rows), columns, 0)
        return input_ids, attention_mask

    # -- signatures -----------------------------------------------------------------------
    def _generation_signature(self, search_name, with_options, xla):
        signature_name = search_name + (XLA_SUFFIX if xla else "")
        search_function, search = self._search_block(search_name, xla)
        codec = self._parts.codec
        limit = search.max_new_tokens
        specs = self._text_specs("text", languages=("src_lang", "tgt_lang"))
        if with_options:
            specs.update(
                max_new_tokens=tf.TensorSpec(None, tf.int32, name="max_new_tokens"),
                min_new_tokens=tf.TensorSpec(None, tf.int32, name="min_new_tokens"),
                length_penalty=tf.TensorSpec(None, tf.float32, name="length_penalty"),
            )

        def body(inputs):
            texts = inputs["text"]
            batch_size = tf.size(texts, out_type=tf.int32)
            src_lang, tgt_lang = self._languages(inputs, batch_size, "src_lang", "tgt_lang")
            input_ids, attention_mask = self._encode_sources(texts, src_lang)
            if codec.uses_languages:
                forced_bos = codec.target_language_ids(tgt_lang, batch_size)
            else:
                forced_bos = tf.fill([batch_size], tf.constant(search.default_forced_bos_token_id, tf.int32))
            if with_options:
                max_new_tokens = request_checks.check_in_range(
                    request_checks.request_scalar(inputs["max_new_tokens"], "max_new_tokens"),
                    "max_new_tokens", 1, limit, " (the limit this model was exported with)",
                )
                min_new_tokens = request_checks.check_in_range(
                    request_checks.request_scalar(inputs["min_new_tokens"], "min_new_tokens"),
                    "min_new_tokens", 0, limit,
                )
                length_penalty = request_checks.check_finite(
                    request_checks.request_scalar(inputs["length_penalty"], "length_penalty"),
                    "length_penalty",
                )
                knobs = search.knobs(max_new_tokens, min_new_tokens, length_penalty)
            else:
                knobs = search.default_knobs()

            def generate():
                ids, mask = input_ids, attention_mask
                is_active = tf.ones([batch_size], tf.bool)
                forced = forced_bos
                if xla:
                    rows = self._xla_rows(batch_size, signature_name)
                    ids, mask = self._padded_sources(ids, mask, rows)
                    is_active = tf.range(rows) < batch_size
                    forced = xla_padding.pad_rows(forced, rows)
                sequences, scores, lengths = search_function(ids, mask, is_active, forced, *knobs)
                sequences, scores, lengths = sequences[:batch_size], scores[:batch_size], lengths[:batch_size]
                longest = tf.reduce_max(lengths)
                return self._decode(sequences[:, :longest]), scores

            def nothing():
                return tf.zeros([0], tf.string), tf.zeros([0], tf.float32)

            text, scores = tf.cond(batch_size > 0, generate, nothing)
            return {"text": text, "scores": scores}

        return self._concrete(body, specs)

    def _score_signature(self, xla):
        signature_name = "score" + (XLA_SUFFIX if xla else "")
        score_function = self._score_block(xla)
        settings = self._parts.settings
        specs = self._text_specs("text", "target", languages=("src_lang", "tgt_lang"))

        def body(inputs):
            texts, targets = inputs["text"], inputs["target"]
            batch_size = tf.size(texts, out_type=tf.int32)
            same_count = request_checks.assert_that(
                tf.equal(tf.size(targets, out_type=tf.int32), batch_size),
                ["score needs one target per text: got ", tf.strings.as_string(tf.size(targets)),
                 " targets for ", tf.strings.as_string(batch_size), " texts"],
            )
            with tf.control_dependencies([same_count]):
                batch_size = tf.identity(batch_size)
            src_lang, tgt_lang = self._languages(inputs, batch_size, "src_lang", "tgt_lang")
            input_ids, attention_mask = self._encode_sources(texts, src_lang)
            labels, labels_mask = self._encode_targets(targets, tgt_lang)

            def score():
                ids, mask, target_ids, target_mask = input_ids, attention_mask, labels, labels_mask
                if xla:
                    rows = self._xla_rows(batch_size, signature_name)
                    ids, mask = self._padded_sources(ids, mask, rows)
                    columns = xla_padding.bucket_for(tf.shape(target_ids)[1], settings.target_buckets)
                    pad_id = self._parts.codec.pad_token_id
                    target_ids = xla_padding.pad_columns(xla_padding.pad_rows(target_ids, rows), columns, pad_id)
                    target_mask = xla_padding.pad_columns(xla_padding.pad_rows(target_mask, rows), columns, 0)
                log_likelihood, num_tokens = score_function(ids, mask, target_ids, target_mask)
                return log_likelihood[:batch_size], num_tokens[:batch_size]

            def nothing():
                return tf.zeros([0], tf.float32), tf.zeros([0], tf.int32)

            log_likelihood, num_tokens = tf.cond(batch_size > 0, score, nothing)
            return {"log_likelihood": log_likelihood, "num_tokens": num_tokens}

        return self._concrete(body, specs)

    def _encode_signature(self, xla):
        signature_name = "encode" + (XLA_SUFFIX if xla else "")
        encode_function = self._encode_block(xla)
        width = int(self._parts.model.config.d_model)
        specs = self._text_specs("text", languages=("src_lang",))

        def body(inputs):
            texts = inputs["text"]
            batch_size = tf.size(texts, out_type=tf.int32)
            (src_lang,) = self._languages(inputs, batch_size, "src_lang")
            input_ids, attention_mask = self._encode_sources(texts, src_lang)

            def encode():
                ids, mask = input_ids, attention_mask
                if xla:
                    rows = self._xla_rows(batch_size, signature_name)
                    ids, mask = self._padded_sources(ids, mask, rows)
                embedding, num_tokens = encode_function(ids, mask)
                return embedding[:batch_size], num_tokens[:batch_size]

            def nothing():
                return tf.zeros([0, width], tf.float32), tf.zeros([0], tf.int32)

            embedding, num_tokens = tf.cond(batch_size > 0, encode, nothing)
            return {"embedding": tf.ensure_shape(embedding, [None, width]), "num_tokens": num_tokens}

        return self._concrete(body, specs)

    def _tokenize_signature(self):
        specs = self._text_specs("text", languages=("src_lang",))

        def body(inputs):
            texts = inputs["text"]
            batch_size = tf.size(texts, out_type=tf.int32)
            (src_lang,) = self._languages(inputs, batch_size, "src_lang")
            input_ids, attention_mask = self._encode_sources(texts, src_lang)
            return {"input_ids": input_ids, "attention_mask": attention_mask}

        return self._concrete(body, specs)

    def _detokenize_signature(self):
        specs = {"ids": tf.TensorSpec([None, None], tf.int32, name="ids")}
        return self._concrete(lambda inputs: {"text": self._decode(inputs["ids"])}, specs)
