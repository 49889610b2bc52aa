"""`assets.extra/tf_serving_warmup_requests`: requests TF Serving replays before serving.

TF Serving reads this TFRecord file of `PredictionLog` protos when it loads a model
version and runs every request once before it marks the version available, so the first
real request does not pay for graph instantiation (and, for the `*_xla` signatures, XLA
compilation). The protos come from the `tensorflow-serving-api` package
(`pip install tensorflow-serving-api`), needed at export time only.
"""

import os

import numpy as np
import tensorflow as tf

WARMUP_DIR = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000  # TF Serving reads at most this many records

WARMUP_TEXT = "Hello world."
WARMUP_TARGET = "Bonjour le monde."
# Preferred pair; a checkpoint whose codes lack one (wmt21 has no "fr") takes its own.
WARMUP_LANGUAGES = ("en", "fr")


def _serving_protos():
    try:
        from tensorflow_serving.apis import predict_pb2, prediction_log_pb2
    except ImportError as error:
        raise ImportError(
            "Writing TF Serving warm-up requests needs the tensorflow-serving-api package "
            "(pip install 'tensorflow-serving-api==2.21.*', or --no-deps if it would replace "
            "your tensorflow); or export with warmup=False / --no-warmup"
        ) from error
    return predict_pb2, prediction_log_pb2


def warmup_languages(codec):
    """`(source, target)` language codes the warm-up requests use: en -> fr when the
    tokenizer knows both, else its first two codes; `(None, None)` for mT5."""
    if not codec.uses_languages:
        return None, None
    codes = list(codec.tokenizer.lang_codes)
    if all(code in codes for code in WARMUP_LANGUAGES):
        return WARMUP_LANGUAGES
    return codes[0], codes[1 % len(codes)]


def text_of_length(codec, num_tokens, src_lang=None):
    """A text whose tokenization has `num_tokens` ids (or the closest length above),
    built from repeated words (eager tokenizer calls, export time only)."""
    def length(text):
        kwargs = {"src_lang": src_lang} if codec.uses_languages else {}
        return int(codec.tokenizer.tokenize(text, **kwargs).shape[0])

    words = 1
    text = "hello"
    while length(text) < num_tokens and words < 4 * num_tokens:
        words += 1
        text = " ".join(["hello"] * words)
    return text


def example_inputs(signature_name, codec, settings, batch_size=1, text=WARMUP_TEXT):
    """numpy inputs of one valid request to `signature_name` (also used by tests)."""
    base = signature_name[: -len("_xla")] if signature_name.endswith("_xla") else signature_name
    texts = np.array([text] * batch_size, dtype=object)
    languages = {}
    src_lang, tgt_lang = warmup_languages(codec)
    if codec.uses_languages:
        languages = {
            "src_lang": np.array([src_lang] * batch_size, dtype=object),
            "tgt_lang": np.array([tgt_lang] * batch_size, dtype=object),
        }
    if base == "serving_default":
        return {"text": texts, **languages}
    if base == "generate_with_options":
        return {
            "text": texts,
            **languages,
            "max_new_tokens": np.int32(settings.max_new_tokens),
            # Requests may ask for at most the limit; the export's default (e.g. a
            # checkpoint's min_length) may lie above it.
            "min_new_tokens": np.int32(min(settings.min_new_tokens,
                                           settings.max_new_tokens_limit)),
            "length_penalty": np.float32(settings.length_penalty),
        }
    if base == "score":
        return {"text": texts, "target": np.array([WARMUP_TARGET] * batch_size, dtype=object), **languages}
    if base in ("encode", "tokenize"):
        languages.pop("tgt_lang", None)
        return {"text": texts, **languages}
    if base == "detokenize":
        kwargs = {"src_lang": src_lang} if codec.uses_languages else {}
        ids = codec.tokenizer.tokenize(text, **kwargs).numpy().astype(np.int32)
        return {"ids": np.tile(ids[np.newaxis, :], [batch_size, 1])}
    raise ValueError(f"Unknown signature {signature_name!r}")


def warmup_plan(signature_names, codec, settings):
    """`[(signature_name, inputs)]`: one batch-1 request per signature and, for the `*_xla`
    signatures, one request per shape bucket of `settings.xla_warmup_buckets()` (an XLA
    program is compiled per bucket; `score_xla` is warmed up with short targets)."""
    src_lang, _ = warmup_languages(codec)
    texts = {}  # length bucket -> a text whose tokenization falls into it
    previous = 0
    for length_bucket in settings.source_buckets:
        texts[length_bucket] = (previous + 1, length_bucket)
        previous = length_bucket
    plan = []
    for name in signature_names:
        if not name.endswith("_xla"):
            plan.append((name, example_inputs(name, codec, settings)))
            continue
        for batch_bucket, length_bucket in settings.xla_warmup_buckets():
            shortest, _ = texts[length_bucket]
            text = WARMUP_TEXT if shortest == 1 else text_of_length(codec, shortest, src_lang)
            plan.append((name, example_inputs(name, codec, settings, batch_bucket, text)))
    if len(plan) > MAX_WARMUP_RECORDS:
        raise ValueError(
            f"{len(plan)} warm-up requests; TF Serving reads at most {MAX_WARMUP_RECORDS}. "
            "Warm up fewer XLA shapes (xla_warmup)."
        )
    return plan


def predict_request(model_name, signature_name, inputs):
    """A `tensorflow.serving.PredictRequest` for numpy `inputs`."""
    predict_pb2, _ = _serving_protos()
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    return request


def write_warmup_file(saved_model_dir, model_name, plan):
    """Writes the plan as `PredictionLog` records; returns the file path."""
    _, prediction_log_pb2 = _serving_protos()
    directory = os.path.join(saved_model_dir, WARMUP_DIR)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, WARMUP_FILE)
    with tf.io.TFRecordWriter(path) as writer:
        for signature_name, inputs in plan:
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(
                    request=predict_request(model_name, signature_name, inputs)
                )
            )
            writer.write(log.SerializeToString())
    return path


def read_warmup_file(path):
    """`[(signature_name, {input: numpy})]` from a warm-up file (what a server replays)."""
    _, prediction_log_pb2 = _serving_protos()
    requests = []
    for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
        log = prediction_log_pb2.PredictionLog.FromString(record)
        request = log.predict_log.request
        inputs = {key: tf.make_ndarray(proto) for key, proto in request.inputs.items()}
        requests.append((request.model_spec.signature_name, inputs))
    return requests
