"""SavedModel export for TF Serving (`savedmodel/`, `tfmodels export`).

Two tiny random checkpoints (mT5 with the tests/data mT5 tokenizer, M2M100 with the
tests/data M2M100 tokenizer) are exported once per module: mT5 through
`export_savedmodel` (greedy, with `*_xla` variants), M2M100 through the `tfmodels export`
command line (beam search). Then, in fresh processes that import only tensorflow and
tensorflow_text (`tests/fixtures/savedmodel/run_signatures.py`), every signature is run
through `tf.saved_model.load` and through the TF1 session path TF Serving uses, and the
answers are compared with what this package computes in Python (`model.generate` +
`detokenize`, the model's own forward pass). Both subprocesses start as soon as the
exports exist and run while this process computes the expected values.
"""

import base64
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from fixtures.savedmodel.checkpoints import make_tiny_m2m100_checkpoint, make_tiny_mt5_checkpoint
from fixtures.savedmodel.expected_values import (
    decode_all,
    language_kwargs,
    python_encode,
    python_generation,
    python_score,
)
from fixtures.savedmodel.jobs import SUBPROCESS_ENV, SUBPROCESS_TIMEOUT, Job, finish

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO_DIR, "savedmodel", "README.md")

MAX_SOURCE_LENGTH = 24
MAX_TARGET_LENGTH = 16
LONG_TEXT = " ".join(["translation"] * 80)  # far more than MAX_SOURCE_LENGTH tokens
TEXTS = ["Hello world.", "The quick brown fox jumps over the lazy dog.", "", LONG_TEXT,
         "Guten Morgen, wie geht es dir?"]
TARGETS = ["Bonjour le monde.", "Le renard.", "", "Une traduction.", "Good morning"]
SOURCE_LANGUAGES = ["en", "en", "fr", "de", "de"]
TARGET_LANGUAGES = ["fr", "de", "en", "fr", "en"]
OPTIONS = {"max_new_tokens": 4, "min_new_tokens": 2, "length_penalty": 1.5}
MT5_XLA_BATCH = 8

SIGNATURE_INPUTS = {
    "mt5": {
        "serving_default": {"text"},
        "generate_with_options": {"text", "max_new_tokens", "min_new_tokens", "length_penalty"},
        "score": {"text", "target"},
        "encode": {"text"},
        "tokenize": {"text"},
        "detokenize": {"ids"},
    },
    "m2m100": {
        "serving_default": {"text", "src_lang", "tgt_lang"},
        "generate_with_options": {"text", "src_lang", "tgt_lang", "max_new_tokens",
                                  "min_new_tokens", "length_penalty"},
        "score": {"text", "target", "src_lang", "tgt_lang"},
        "encode": {"text", "src_lang"},
        "tokenize": {"text", "src_lang"},
        "detokenize": {"ids"},
    },
}
SIGNATURE_OUTPUTS = {
    "serving_default": {"text", "scores"},
    "generate_with_options": {"text", "scores"},
    "score": {"log_likelihood", "num_tokens"},
    "encode": {"embedding", "num_tokens"},
    "tokenize": {"input_ids", "attention_mask"},
    "detokenize": {"text"},
}


def readme_code_blocks(language):
    with open(README, encoding="utf-8") as handle:
        text = handle.read()
    return re.findall(r"```" + language + r"\n(.*?)```", text, flags=re.S)


def readme_rest_examples():
    """The README's `:predict` bodies: `[(body, model key)]` (M2M100 when a language is sent)."""
    examples = []
    for block in readme_code_blocks("json"):
        body = json.loads(block)
        if "instances" not in body and "inputs" not in body:
            continue
        mentions_language = "src_lang" in block or "tgt_lang" in block
        examples.append((body, "m2m100" if mentions_language else "mt5"))
    return examples


def readme_grpc_request():
    """The PredictRequest the README's gRPC example builds (its code up to the network call)."""
    pytest.importorskip("tensorflow_serving")
    (block,) = readme_code_blocks("python")
    namespace = {"__name__": "readme_example"}
    exec(compile(block, "README gRPC example", "exec"), namespace)  # noqa: S102 - our own README
    return namespace["request"]


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Exports both checkpoints, starts the TF2 and TF1 runner processes, computes the
    expected values meanwhile, and returns everything once both runners are done."""
    from savedmodel import ExportSettings, export_savedmodel
    from savedmodel.checkpoint import load_checkpoint
    from savedmodel.export_settings import ExportSettings as Settings
    from savedmodel.signature_docs import signature_specs
    from savedmodel import rest_json, warmup
    from tfmodels import cli

    workspace = str(tmp_path_factory.mktemp("savedmodel"))
    mt5_checkpoint = make_tiny_mt5_checkpoint(os.path.join(workspace, "mt5-checkpoint"))
    m2m100_checkpoint = make_tiny_m2m100_checkpoint(os.path.join(workspace, "m2m100-checkpoint"),
                                                    init_std=0.3)

    exports = {}
    model, tokenizer = load_checkpoint(mt5_checkpoint)
    result = export_savedmodel(
        mt5_checkpoint, os.path.join(workspace, "served", "mt5"),
        ExportSettings(num_beams=1, max_new_tokens=6, max_new_tokens_limit=10,
                       repetition_penalty=1.3, max_source_length=MAX_SOURCE_LENGTH,
                       max_target_length=MAX_TARGET_LENGTH, xla=True,
                       max_batch_size=MT5_XLA_BATCH, model_name="mt5"),
        model=model, tokenizer=tokenizer,
    )
    exports["mt5"] = dict(model=model, tokenizer=tokenizer, settings=result.settings, family="mt5",
                          base=os.path.dirname(result.saved_model_dir), dir=result.saved_model_dir)

    m2m100_base = os.path.join(workspace, "served", "m2m100")
    exit_code = cli.main([
        "export", m2m100_checkpoint, m2m100_base, "--num-beams", "3", "--max-new-tokens", "6",
        "--length-penalty", "0.8", "--early-stopping", "true", "--no-repeat-ngram-size", "3",
        "--max-source-length", str(MAX_SOURCE_LENGTH), "--max-target-length", str(MAX_TARGET_LENGTH),
        "--model-name", "m2m100",
    ])
    assert exit_code == 0
    m2m100_dir = os.path.join(m2m100_base, "1")
    with open(os.path.join(m2m100_dir, "assets.extra", "tfmodels_export.json"), encoding="utf-8") as handle:
        info = json.load(handle)
    model, tokenizer = load_checkpoint(m2m100_checkpoint)
    exports["m2m100"] = dict(model=model, tokenizer=tokenizer, settings=Settings(**info["settings"]),
                             family="m2m100", base=m2m100_base, dir=m2m100_dir)

    # ---- requests ----------------------------------------------------------------------
    models = {key: export["dir"] for key, export in exports.items()}
    tf2, tf1 = Job(models), Job(models)
    index = {"tf2": {}, "tf1": {}}
    texts = np.array(TEXTS, dtype=object)
    for key, export in exports.items():
        family = export["family"]
        languages = language_kwargs(family, "src_lang", np.array(SOURCE_LANGUAGES, dtype=object))
        targets = language_kwargs(family, "tgt_lang", np.array(TARGET_LANGUAGES, dtype=object))
        detokenize_ids = np.asarray(export["tokenizer"](
            TEXTS[:3], **language_kwargs(family, "src_lang", SOURCE_LANGUAGES[:3]))["input_ids"])
        export["detokenize_ids"] = detokenize_ids
        options = {name: np.asarray(value, np.int32 if "tokens" in name else np.float32)
                   for name, value in OPTIONS.items()}
        for mode, job in (("tf2", tf2), ("tf1", tf1)):
            index[mode][key, "serving_default"] = job.add(key, "serving_default", text=texts, **languages, **targets)
            index[mode][key, "generate_with_options"] = job.add(
                key, "generate_with_options", text=texts, **languages, **targets, **options)
            index[mode][key, "score"] = job.add(
                key, "score", text=texts, target=np.array(TARGETS, dtype=object), **languages, **targets)
            index[mode][key, "encode"] = job.add(key, "encode", text=texts, **languages)
            index[mode][key, "tokenize"] = job.add(key, "tokenize", text=texts, **languages)
            index[mode][key, "detokenize"] = job.add(key, "detokenize", ids=detokenize_ids)

    xla_texts = np.array((TEXTS * 2)[:MT5_XLA_BATCH - 1], dtype=object)  # 7 texts -> bucket 8
    index["tf2"]["mt5", "serving_default", "xla-batch"] = tf2.add("mt5", "serving_default", text=xla_texts)
    index["tf2"]["mt5", "serving_default_xla"] = tf2.add("mt5", "serving_default_xla", text=xla_texts)

    bad = {}
    for case, (key, signature, inputs) in bad_request_cases().items():
        bad[case] = tf2.add(key, signature, **inputs)
    index["tf2"]["alive"] = tf2.add("mt5", "serving_default", text=np.array(["Hello world."], dtype=object))
    index["tf1"]["bad"] = tf1.add("m2m100", "serving_default", text=np.array(["Hi"], dtype=object),
                                  src_lang=np.array("en", dtype=object), tgt_lang=np.array("xx", dtype=object))
    index["tf1"]["alive"] = tf1.add("m2m100", "serving_default", text=np.array(["Hi"], dtype=object),
                                    src_lang=np.array("en", dtype=object), tgt_lang=np.array("fr", dtype=object))

    readme = []
    specs = {key: signature_specs(export["dir"]) for key, export in exports.items()}
    for body, key in readme_rest_examples():
        signature = body.get("signature_name", "serving_default")
        name, inputs = rest_json.request_to_inputs(body, specs[key][signature]["inputs"])
        readme.append((body, key, name, tf2.add(key, name, **inputs)))
    grpc = None
    try:
        import tensorflow as tf

        request = readme_grpc_request()
        inputs = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
        grpc = (request, tf2.add(request.model_spec.name, request.model_spec.signature_name, **inputs))
    except pytest.skip.Exception:
        pass

    # The server replays the warm-up file through the session path; the *_xla records
    # (XLA compilations, tens of seconds) are replayed by the slow test only.
    warmups = {}
    for key, export in exports.items():
        path = os.path.join(export["dir"], warmup.WARMUP_DIR, warmup.WARMUP_FILE)
        warmups[key] = [
            (name, inputs, None if name.endswith("_xla") else tf1.add(key, name, **inputs))
            for name, inputs in warmup.read_warmup_file(path)
        ]

    processes = {"tf2": tf2.start("tf2", workspace), "tf1": tf1.start("tf1", workspace)}

    # ---- expected values, while the runners work ---------------------------------------
    expected = {}
    for key, export in exports.items():
        family = export["family"]
        src = SOURCE_LANGUAGES if family == "m2m100" else None
        tgt = TARGET_LANGUAGES if family == "m2m100" else None
        expected[key, "serving_default"] = python_generation(export, TEXTS, src, tgt)
        expected[key, "generate_with_options"] = python_generation(export, TEXTS, src, tgt, **OPTIONS)
        expected[key, "score"] = python_score(export, TEXTS, TARGETS, src, tgt)
        expected[key, "encode"] = python_encode(export, TEXTS, src)
        expected[key, "detokenize"] = decode_all(
            export["tokenizer"].detokenize(export["detokenize_ids"], skip_special_tokens=True).numpy())
    expected["mt5", "xla-batch"] = python_generation(exports["mt5"], list(xla_texts))

    results = {mode: finish(*process) for mode, process in processes.items()}
    return dict(exports=exports, results=results, index=index, expected=expected, bad=bad,
                readme=readme, grpc=grpc, warmups=warmups, specs=specs, workspace=workspace)


def result_of(served, mode, key):
    return served["results"][mode]["results"][served["index"][mode][key]]


def outputs_of(served, mode, key):
    result = result_of(served, mode, key)
    assert "outputs" in result, f"{key} failed in {mode}: {result.get('error')}: {result.get('message', '')[:2000]}"
    return result["outputs"]


def bad_request_cases():
    """`{case: (model, signature, inputs)}` of requests a server must survive."""
    one = np.array(["Hello"], dtype=object)
    three = np.array(["a", "b", "c"], dtype=object)
    empty = np.array([], dtype=object)
    en, fr = np.array("en", dtype=object), np.array("fr", dtype=object)
    options = dict(max_new_tokens=np.int32(3), min_new_tokens=np.int32(0), length_penalty=np.float32(1.0))
    return {
        "empty batch mt5": ("mt5", "serving_default", dict(text=empty)),
        "empty batch m2m100": ("m2m100", "serving_default", dict(text=empty, src_lang=en, tgt_lang=fr)),
        "empty batch score": ("mt5", "score", dict(text=empty, target=empty)),
        "empty batch encode": ("m2m100", "encode", dict(text=empty, src_lang=en)),
        "empty batch tokenize": ("mt5", "tokenize", dict(text=empty)),
        "empty batch detokenize": ("mt5", "detokenize", dict(ids=np.zeros([0, 0], np.int32))),
        "empty batch xla": ("mt5", "serving_default_xla", dict(text=empty)),
        "empty strings": ("m2m100", "serving_default", dict(text=np.array(["", ""], dtype=object),
                                                             src_lang=en, tgt_lang=fr)),
        "not UTF-8": ("mt5", "serving_default", dict(text=np.array([b"\xff\xfe\x80 abc"], dtype=object))),
        "unknown tgt_lang": ("m2m100", "serving_default", dict(text=one, src_lang=en,
                                                              tgt_lang=np.array("xx", dtype=object))),
        "unknown src_lang": ("m2m100", "encode", dict(text=one, src_lang=np.array(["zz"], dtype=object))),
        "language count": ("m2m100", "serving_default", dict(
            text=three, src_lang=np.array(["en", "fr"], dtype=object), tgt_lang=fr)),
        "max_new_tokens over limit": ("mt5", "generate_with_options", dict(
            text=one, **{**options, "max_new_tokens": np.int32(11)})),
        "max_new_tokens zero": ("mt5", "generate_with_options", dict(
            text=one, **{**options, "max_new_tokens": np.int32(0)})),
        "options differ per instance": ("mt5", "generate_with_options", dict(
            text=np.array(["a", "b"], dtype=object), **{**options, "max_new_tokens": np.array([3, 4], np.int32)})),
        "length_penalty nan": ("m2m100", "generate_with_options", dict(
            text=one, src_lang=en, tgt_lang=fr, **{**options, "length_penalty": np.float32("nan")})),
        "score target count": ("mt5", "score", dict(text=three, target=one)),
        "detokenize unknown id": ("mt5", "detokenize", dict(ids=np.array([[5, 99999]], np.int32))),
        "xla batch too large": ("mt5", "serving_default_xla", dict(
            text=np.array(["x"] * (MT5_XLA_BATCH + 1), dtype=object))),
    }


# Expected outcome per case: ("ok", number of rows) or ("error", [message fragments]).
BAD_REQUEST_OUTCOMES = {
    "empty batch mt5": ("ok", 0),
    "empty batch m2m100": ("ok", 0),
    "empty batch score": ("ok", 0),
    "empty batch encode": ("ok", 0),
    "empty batch tokenize": ("ok", 0),
    "empty batch detokenize": ("ok", 0),
    "empty batch xla": ("ok", 0),
    "empty strings": ("ok", 2),
    "not UTF-8": ("ok or error", 1),
    "unknown tgt_lang": ("error", ["Unknown language code", "tgt_lang", "xx"]),
    "unknown src_lang": ("error", ["Unknown language code", "src_lang", "zz"]),
    "language count": ("error", ["src_lang must be a single value or one value per text", "2 values for 3"]),
    "max_new_tokens over limit": ("error", ["max_new_tokens must be between 1 and 10", "11"]),
    "max_new_tokens zero": ("error", ["max_new_tokens must be between 1 and 10", "got 0"]),
    "options differ per instance": ("error", ["max_new_tokens must be one value for the whole request"]),
    "length_penalty nan": ("error", ["length_penalty must be a finite number"]),
    "score target count": ("error", ["score needs one target per text", "1 targets for 3"]),
    "detokenize unknown id": ("error", ["out of range", "99999"]),
    "xla batch too large": ("error", [f"at most {MT5_XLA_BATCH} texts", "got 9"]),
}


# --------------------------------------------------------------------------------- tests
def test_export_layout(served):
    from savedmodel import signature_names

    for key, export in served["exports"].items():
        base, directory = export["base"], export["dir"]
        assert os.path.basename(directory) == "1"
        assert export["settings"].version == 1  # recorded as written (was None when picked)
        assert sorted(name for name in os.listdir(base) if not name.startswith(".")) == ["1", "models.config"]
        with open(os.path.join(base, "models.config"), encoding="utf-8") as handle:
            config = handle.read()
        assert f'name: "{key}"' in config and f'base_path: "/models/{key}"' in config
        assert os.path.isfile(os.path.join(directory, "assets.extra", "tf_serving_warmup_requests"))
        expected = signature_names(xla=export["settings"].xla)
        assert sorted(served["specs"][key]) == sorted(expected)


def test_signature_inputs_and_outputs(served):
    for key in ("mt5", "m2m100"):
        specs = served["specs"][key]
        for signature, inputs in SIGNATURE_INPUTS[key].items():
            for name in (signature, signature + "_xla"):
                if name not in specs:
                    continue
                assert set(specs[name]["inputs"]) == inputs, name
                assert set(specs[name]["outputs"]) == SIGNATURE_OUTPUTS[signature], name
                assert specs[name]["method"] == "tensorflow/serving/predict"
        assert specs["serving_default"]["inputs"]["text"] == ("string", [-1])
        assert specs["serving_default"]["outputs"]["text"] == ("string", [-1])
        assert specs["serving_default"]["outputs"]["scores"] == ("float", [-1])
        assert specs["detokenize"]["inputs"]["ids"] == ("int32", [-1, -1])
        d_model = served["exports"][key]["model"].config.d_model
        assert specs["encode"]["outputs"]["embedding"] == ("float", [-1, d_model])
    assert served["specs"]["m2m100"]["serving_default"]["inputs"]["src_lang"] == ("string", None)


def test_default_export_has_no_xla_and_xla_variants_are_separate(served):
    from savedmodel import op_check

    assert op_check.must_compile_functions(served["exports"]["m2m100"]["dir"]) == []
    # mT5 with --xla: the two searches (buffer 6 and limit 10), score and encode blocks.
    assert len(op_check.must_compile_functions(served["exports"]["mt5"]["dir"])) == 4


def test_loading_needs_only_tensorflow(served):
    for mode in ("tf2", "tf1"):
        assert served["results"][mode]["foreign_modules"] == []


@pytest.mark.parametrize("mode", ["tf2", "tf1"])
@pytest.mark.parametrize("key", ["mt5", "m2m100"])
@pytest.mark.parametrize("signature", ["serving_default", "generate_with_options"])
def test_generation_matches_python_generate(served, mode, key, signature, report_figure):
    outputs = outputs_of(served, mode, (key, signature))
    expected_texts, expected_scores = served["expected"][key, signature]
    assert outputs["text"] == expected_texts
    assert len(set(expected_texts)) > 1, "the test inputs should give different outputs"
    difference = np.abs(np.asarray(outputs["scores"]) - expected_scores).max()
    report_figure(f"{key} {signature} {mode} scores vs python", max_abs_diff=float(difference))
    np.testing.assert_allclose(outputs["scores"], expected_scores, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("mode", ["tf2", "tf1"])
@pytest.mark.parametrize("key", ["mt5", "m2m100"])
def test_score_encode_tokenize_detokenize_match_python(served, mode, key):
    export = served["exports"][key]
    log_likelihood, num_tokens = served["expected"][key, "score"]
    score = outputs_of(served, mode, (key, "score"))
    np.testing.assert_array_equal(score["num_tokens"], num_tokens)
    np.testing.assert_allclose(score["log_likelihood"], log_likelihood, rtol=1e-4, atol=1e-3)

    embedding, encoded = served["expected"][key, "encode"]
    encode = outputs_of(served, mode, (key, "encode"))
    np.testing.assert_allclose(encode["embedding"], embedding, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(encode["num_tokens"], np.asarray(encoded["attention_mask"]).sum(axis=1))

    tokenize = outputs_of(served, mode, (key, "tokenize"))
    np.testing.assert_array_equal(tokenize["input_ids"], np.asarray(encoded["input_ids"]))
    np.testing.assert_array_equal(tokenize["attention_mask"], np.asarray(encoded["attention_mask"]))
    # The over-long text is truncated to the exported maximum, special tokens kept.
    assert np.asarray(tokenize["attention_mask"])[TEXTS.index(LONG_TEXT)].sum() == MAX_SOURCE_LENGTH
    assert np.asarray(tokenize["input_ids"])[TEXTS.index(LONG_TEXT), -1] == export["tokenizer"].eos_token_id

    assert outputs_of(served, mode, (key, "detokenize"))["text"] == served["expected"][key, "detokenize"]


def test_xla_variant_matches_default_signature(served):
    default = outputs_of(served, "tf2", ("mt5", "serving_default", "xla-batch"))
    compiled = outputs_of(served, "tf2", ("mt5", "serving_default_xla"))
    expected_texts, expected_scores = served["expected"]["mt5", "xla-batch"]
    assert default["text"] == expected_texts
    assert compiled["text"] == expected_texts
    np.testing.assert_allclose(compiled["scores"], expected_scores, rtol=1e-4, atol=1e-3)


def test_ops_exist_in_stock_tensorflow_or_tf_text_sentencepiece(served):
    from savedmodel import op_check

    stock = frozenset(served["results"]["tf2"]["stock_ops"])
    assert not op_check.ALLOWED_TF_TEXT_OPS & stock, "the allow-list must name tf-text ops only"
    used_tf_text = {}
    for key, export in served["exports"].items():
        assert op_check.unsupported_ops(export["dir"], stock) == {}, key
        used_tf_text[key] = set(op_check.graph_ops(export["dir"])) - stock
    assert "TFText>FastSentencepieceTokenize" in used_tf_text["mt5"]
    assert "SentencepieceTokenizeOp" in used_tf_text["m2m100"]
    assert used_tf_text["mt5"] | used_tf_text["m2m100"] <= op_check.ALLOWED_TF_TEXT_OPS


@pytest.mark.parametrize("case", sorted(BAD_REQUEST_OUTCOMES))
def test_bad_request_gets_a_result_or_a_clear_error(served, case):
    result = served["results"]["tf2"]["results"][served["bad"][case]]
    outcome, detail = BAD_REQUEST_OUTCOMES[case]
    if outcome == "ok or error":
        if "error" in result:
            assert result["error"] == "InvalidArgumentError", result
        else:
            first = next(iter(result["outputs"].values()))
            assert len(first) == detail
        return
    if outcome == "ok":
        assert "outputs" in result, result
        for value in result["outputs"].values():
            assert len(value) == detail
        return
    assert result.get("error") == "InvalidArgumentError", result
    for fragment in detail:
        assert fragment in result["message"], (fragment, result["message"][:1000])


def test_process_keeps_serving_after_bad_requests(served):
    assert outputs_of(served, "tf2", "alive")["text"][0]
    tf1_bad = result_of(served, "tf1", "bad")
    assert tf1_bad["error"] == "InvalidArgumentError" and "Unknown language code" in tf1_bad["message"]
    assert len(outputs_of(served, "tf1", "alive")["text"]) == 1


def test_warmup_requests_replay_through_the_session_path(served):
    from savedmodel import signature_names

    for key, records in served["warmups"].items():
        specs = served["specs"][key]
        assert sorted(name for name, _, _ in records) == sorted(signature_names(served["exports"][key]["settings"].xla))
        for name, inputs, index in records:
            assert set(inputs) == set(specs[name]["inputs"]), name
            if index is None:  # an *_xla record: replayed in test_savedmodel_slow.py
                continue
            result = served["results"]["tf1"]["results"][index]
            assert "outputs" in result, (key, name, result.get("message", "")[:1000])


def test_readme_rest_examples_run_against_the_signatures(served):
    from savedmodel import rest_json

    assert len(served["readme"]) >= 8
    covered = set()
    for body, key, signature, index in served["readme"]:
        result = served["results"]["tf2"]["results"][index]
        assert "outputs" in result, (body, result.get("message", "")[:1000])
        assert set(result["outputs"]) == set(served["specs"][key][signature]["outputs"])
        row_format = "instances" in body
        batch = len(body["instances"]) if row_format else None
        arrays = {name: np.asarray(value, dtype=object if name == "text" else None)
                  for name, value in result["outputs"].items()}
        if row_format:
            assert all(len(value) == batch for value in arrays.values())
        response = rest_json.outputs_to_response(
            {name: (np.array([v.encode() for v in value], dtype=object) if name == "text" else np.asarray(value))
             for name, value in result["outputs"].items()},
            row_format,
        )
        assert ("predictions" if row_format else "outputs") in response
        covered.add((key, signature, "instances" if row_format else "inputs"))
    assert ("m2m100", "serving_default", "instances") in covered
    assert ("m2m100", "serving_default", "inputs") in covered
    assert {signature for _, signature, _ in covered} == set(SIGNATURE_OUTPUTS)


def test_readme_grpc_example_runs_against_the_signature(served):
    if served["grpc"] is None:
        pytest.skip("tensorflow-serving-api is not installed")
    request, index = served["grpc"]
    key = request.model_spec.name
    assert set(request.inputs) == set(served["specs"][key][request.model_spec.signature_name]["inputs"])
    result = served["results"]["tf2"]["results"][index]
    assert "outputs" in result, result.get("message", "")[:1000]
    assert len(result["outputs"]["text"]) == 2


def test_readme_serving_commands_match_the_export():
    with open(README, encoding="utf-8") as handle:
        text = handle.read()
    mounted = set(re.findall(r':/models/([a-z0-9_]+)"', text))
    assert {"mt5", "m2m100"} <= mounted
    assert "tensorflow/serving" in text and "-p 8501:8501" in text and "-p 8500:8500" in text
    for name in re.findall(r"localhost:8501/v1/models/([a-z0-9_]+):predict", text):
        assert name in mounted
    assert "--xla_cpu_compilation_enabled" in text


def test_saved_model_cli_show_all(served):
    directory = served["exports"]["m2m100"]["dir"]
    completed = subprocess.run(
        [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli", "show", "--dir", directory, "--all"],
        env=SUBPROCESS_ENV, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    for signature, inputs in SIGNATURE_INPUTS["m2m100"].items():
        assert f"signature_def['{signature}']" in completed.stdout
    for name in ("src_lang", "tgt_lang", "max_new_tokens", "embedding", "log_likelihood"):
        assert f"['{name}']" in completed.stdout


def test_saved_model_cli_run(served):
    """`saved_model_cli run` through the TF1 session path. The stock console script does not
    load tensorflow-text's ops (TF Serving links them), so its `main` runs with
    tensorflow_text imported first."""
    directory = served["exports"]["mt5"]["dir"]
    script = ("import sys, tensorflow_text; from tensorflow.python.tools import saved_model_cli; "
              "sys.argv[0] = 'saved_model_cli'; saved_model_cli.main()")
    completed = subprocess.run(
        [sys.executable, "-c", script, "run", "--dir", directory, "--tag_set", "serve",
         "--signature_def", "serving_default", "--input_exprs", f"text={TEXTS[:2]!r}"],
        env=SUBPROCESS_ENV, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "Result for output key text:" in completed.stdout
    assert "Result for output key scores:" in completed.stdout
    expected_texts, _ = served["expected"]["mt5", "serving_default"]
    for text in expected_texts[:2]:
        assert repr(text.encode("utf-8"))[2:-1][:20] in completed.stdout


# ------------------------------------------------------------------- fast unit tests
def test_export_settings_validation():
    from savedmodel.export_settings import ExportSettings, power_of_two_buckets

    assert power_of_two_buckets(16, 100) == (16, 32, 64, 100)
    assert power_of_two_buckets(1, 1) == (1,)
    assert ExportSettings(max_batch_size=12).batch_buckets == (1, 2, 4, 8, 12)
    with pytest.raises(ValueError, match="max_new_tokens_limit"):
        ExportSettings(max_new_tokens=8, max_new_tokens_limit=4)
    with pytest.raises(ValueError, match="num_beams"):
        ExportSettings(num_beams=0)
    with pytest.raises(ValueError, match="early_stopping"):
        ExportSettings(early_stopping="sometimes")
    settings = ExportSettings(max_batch_size=8, max_source_length=64, xla_warmup="3x20,1x1,4x17",
                              xla=True)
    assert settings.xla_warmup_buckets() == [(4, 32), (1, 16)]
    assert len(ExportSettings(max_batch_size=8, max_source_length=64, xla_warmup="all",
                              xla=True).xla_warmup_buckets()) == 4 * 3
    with pytest.raises(ValueError, match=r"export with xla=True \(--xla with --xla-warmup\)"):
        ExportSettings(xla_warmup="all")
    with pytest.raises(ValueError, match="outside max_batch_size"):
        ExportSettings(max_batch_size=8, xla_warmup="9x16")
    with pytest.raises(ValueError, match="shapes like"):
        ExportSettings(xla_warmup="some")


@pytest.mark.parametrize("language_codes, expected", [("m2m100", ("en", "fr")),
                                                       ("wmt21", ("en", "ha"))])
def test_warmup_requests_use_language_codes_the_checkpoint_knows(language_codes, expected):
    """wmt21 checkpoints have no "fr": their warm-up requests take their own codes (a request
    with an unknown code fails, and TF Serving then refuses to load the version)."""
    import tensorflow as tf

    from savedmodel import warmup
    from savedmodel.export_settings import ExportSettings
    from savedmodel.text_codec import TextCodec
    from tfmodels.tokenizers import M2M100Tokenizer

    tokenizer = M2M100Tokenizer.from_pretrained(
        os.path.join(REPO_DIR, "tests", "data", "m2m100_tokenizer"), language_codes=language_codes)
    codec = TextCodec(tokenizer, max_source_length=32, max_target_length=32)
    settings = ExportSettings(max_new_tokens=8, max_new_tokens_limit=8, min_new_tokens=0,
                              length_penalty=1.0)
    for name in ("serving_default", "generate_with_options", "score", "encode"):
        inputs = warmup.example_inputs(name, codec, settings)
        assert inputs["src_lang"].tolist() == [expected[0]]
        # The signature's own encoding accepts them (what failed when replayed).
        codec.encode_sources(tf.constant(inputs["text"].tolist()),
                             tf.constant(inputs["src_lang"].tolist()))
        if "tgt_lang" in inputs:
            assert inputs["tgt_lang"].tolist() == [expected[1]]
            codec.target_language_ids(tf.constant(inputs["tgt_lang"].tolist()), 1)
    ids = warmup.example_inputs("detokenize", codec, settings)["ids"]
    assert ids[0, 0] == tokenizer.get_lang_id(expected[0])


def test_warmup_request_asks_for_at_most_the_limit():
    """An export default above the request limit (a checkpoint's min_length 56 with
    --max-new-tokens 32) must not make the warm-up request one the signature refuses."""
    from savedmodel import warmup
    from savedmodel.export_settings import ExportSettings
    from savedmodel.text_codec import TextCodec
    from tfmodels.tokenizers import T5Tokenizer

    tokenizer = T5Tokenizer.from_pretrained(os.path.join(REPO_DIR, "tests", "data", "mt5_tokenizer"))
    codec = TextCodec(tokenizer, max_source_length=32, max_target_length=32)
    settings = ExportSettings(max_new_tokens=4, max_new_tokens_limit=6, min_new_tokens=55,
                              length_penalty=1.0)
    assert warmup.example_inputs("generate_with_options", codec, settings)["min_new_tokens"] == 6


def test_export_of_a_quantised_model_into_the_current_folder(tmp_path, monkeypatch):
    """A model passed in already quantised is recorded as exported (int8), and an export
    into "." takes the folder's own name as the model name."""
    from savedmodel import ExportSettings, export_savedmodel
    from savedmodel.checkpoint import load_checkpoint

    checkpoint = make_tiny_mt5_checkpoint(str(tmp_path / "checkpoint"))
    model, tokenizer = load_checkpoint(checkpoint)
    model.quantize_weights("int8")
    base = tmp_path / "translator"
    base.mkdir()
    monkeypatch.chdir(base)
    result = export_savedmodel(None, ".", ExportSettings(max_new_tokens=2, warmup=False),
                               model=model, tokenizer=tokenizer)
    assert result.settings.model_name == "translator"
    with open(os.path.join(result.saved_model_dir, "assets.extra", "tfmodels_export.json"),
              encoding="utf-8") as handle:
        assert json.load(handle)["settings"]["weight_quantization"] == "int8"
    with open(base / "models.config", encoding="utf-8") as handle:
        assert 'name: "translator"' in handle.read()


def test_next_version(tmp_path):
    from savedmodel import next_version

    assert next_version(str(tmp_path / "missing")) == 1
    for name in ("1", "7", "notes", ".tmp-9-1"):
        (tmp_path / name).mkdir()
    assert next_version(str(tmp_path)) == 8


def test_export_refuses_to_overwrite_a_version(served):
    from savedmodel import ExportSettings, export_savedmodel

    export = served["exports"]["mt5"]
    with pytest.raises(FileExistsError, match="already exists"):
        export_savedmodel(None, export["base"], ExportSettings(version=1),
                          model=export["model"], tokenizer=export["tokenizer"])


def test_rest_json_conversion_rules():
    from savedmodel.rest_json import RestRequestError, outputs_to_response, request_to_inputs

    specs = {"text": ("string", [-1]), "src_lang": ("string", None), "max_new_tokens": ("int32", None)}
    name, inputs = request_to_inputs(
        {"signature_name": "x", "instances": [
            {"text": {"b64": base64.b64encode(b"\xff").decode()}, "src_lang": "en", "max_new_tokens": 3},
            {"text": "b", "src_lang": "de", "max_new_tokens": 3}]}, specs)
    assert name == "x" and inputs["text"].tolist() == [b"\xff", b"b"]
    assert inputs["max_new_tokens"].dtype == np.int32 and inputs["max_new_tokens"].tolist() == [3, 3]
    _, inputs = request_to_inputs({"inputs": {"text": ["a"], "src_lang": "en", "max_new_tokens": 3}}, specs)
    assert inputs["src_lang"].shape == () and inputs["max_new_tokens"].shape == ()
    with pytest.raises(RestRequestError, match="exactly the inputs"):
        request_to_inputs({"instances": [{"text": "a"}]}, specs)
    with pytest.raises(RestRequestError, match="exactly one of"):
        request_to_inputs({"instances": [], "inputs": {}}, specs)
    response = outputs_to_response({"text": np.array([b"x"], dtype=object), "scores": np.array([0.5])}, True)
    assert response == {"predictions": [{"text": "x", "scores": 0.5}]}
