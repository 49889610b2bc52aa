"""bfloat16 weights (`from_pretrained(..., dtype="bfloat16")`): variables, compute and KV
caches in bfloat16, softmax statistics and logits in float32. Half the bytes of float32 per
decoding step; without XLA, TensorFlow's CPU matmul multiplies bfloat16 natively on
processors with AVX512-BF16 (`bench/generate.py`, engine `tfmodels-bf16-graph`).

Checked against the float32 model on the golden checkpoints (both families): forward
logits and greedy/beam ids stay close; XLA and the plain graph (TF Serving's default)
agree; each stored weight is the float32 weight rounded to bfloat16. The measured figures
are printed (see "measured figures").
"""

import ml_dtypes
import numpy as np
import pytest
import tensorflow as tf

from helpers import (GOLDEN_FAMILIES, bf16_vs_fp32, golden_family, load_golden_model, make_batch,
                     to_numpy)
from fixtures.savedmodel.weight_checks import (
    assert_serves_the_models_translations,
    export_info,
    export_variant,
    variable_elements_by_dtype,
)

SOURCE_LENGTHS = (14, 7, 3, 11, 9, 5, 12, 2)
TARGET_LENGTHS = (12, 6, 9, 3, 12, 7, 10, 5)
# Bounds, as for mixed_bfloat16 (tests/test_mixed_bfloat16.py): relative logit error < 5e-2,
# teacher-forced argmax agreement > 90%. Generated ids drift apart after a first
# differing token, so they are compared on the first step and on the whole sequences.
MAX_LOGITS_REL = 5e-2
MIN_ARGMAX_AGREEMENT = 0.9
MIN_FIRST_TOKEN_AGREEMENT = 0.75
MIN_SEQUENCE_TOKEN_AGREEMENT = 0.6
# XLA widens bfloat16 weights to float32 for its products, the plain graph multiplies
# bfloat16 with float32 accumulation: both round each product to bfloat16, so they differ
# only where a rounding falls differently.
MIN_XLA_GRAPH_TOKEN_AGREEMENT = 0.8
NEW_TOKENS = 8


@pytest.fixture(scope="module", params=sorted(GOLDEN_FAMILIES))
def models(request):
    family = request.param
    _, _, ids, vocab = golden_family(family)
    return (family, load_golden_model(family), load_golden_model(family, dtype="bfloat16"),
            ids, vocab)


def _sources(vocab, ids, rows=8, width=10, seed=3):
    rng = np.random.RandomState(seed)
    input_ids = rng.randint(max(ids.values()) + 1, vocab, size=(rows, width)).astype(np.int32)
    attention_mask = np.ones_like(input_ids)
    for row, length in enumerate(rng.randint(3, width + 1, size=rows)):
        input_ids[row, length:] = ids["pad"]
        attention_mask[row, length:] = 0
    return input_ids, attention_mask


def test_weights_are_the_float32_weights_rounded(models):
    _, fp32_model, bf16_model, _, _ = models
    assert bf16_model.compute_dtype == "bfloat16"
    def inner_path(weight):  # without the model's own (numbered) name
        return weight.path.split("/", 1)[1]

    fp32_weights = {inner_path(weight): weight for weight in fp32_model.weights}
    assert len(bf16_model.weights) == len(fp32_weights) > 0
    for weight in bf16_model.weights:
        assert weight.dtype == "bfloat16", weight.path
        expected = fp32_weights[inner_path(weight)].numpy().astype(ml_dtypes.bfloat16)
        np.testing.assert_array_equal(weight.numpy(), expected, weight.path)


def test_forward_stays_close_to_float32(models, report_figure):
    family, fp32_model, bf16_model, ids, vocab = models
    batch = make_batch(vocab, ids, SOURCE_LENGTHS, TARGET_LENGTHS, "right", seed=11)
    fp32_out = fp32_model(**batch)
    out = bf16_model(**batch)
    assert out.logits.dtype == tf.float32
    assert out.encoder_last_hidden_state.dtype == tf.bfloat16
    assert np.all(np.isfinite(to_numpy(out.logits))) and np.isfinite(float(out.loss))
    figures = bf16_vs_fp32(fp32_out, out, batch["labels"])
    report_figure(f"{family} bfloat16 weights vs float32, forward", **figures)
    assert figures["logits_rel"] < MAX_LOGITS_REL
    assert figures["argmax_agreement"] > MIN_ARGMAX_AGREEMENT
    assert figures["loss_diff"] < 0.05 * float(fp32_out.loss)
    assert figures["logits_rel"] > 0  # bfloat16 really was used


@pytest.mark.parametrize("num_beams", [1, 4])
def test_generation_stays_close_to_float32_and_paths_agree(models, num_beams, report_figure):
    family, fp32_model, bf16_model, ids, vocab = models
    input_ids, attention_mask = _sources(vocab, ids)
    options = dict(attention_mask=attention_mask, num_beams=num_beams,
                   max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS)
    reference = fp32_model.generate(input_ids, **options).numpy()
    xla = bf16_model.generate(input_ids, jit_compile=True, **options).numpy()
    graph = bf16_model.generate(input_ids, jit_compile=False, **options).numpy()
    assert xla.shape == graph.shape == reference.shape == (len(input_ids), NEW_TOKENS + 1)
    assert np.all((xla >= 0) & (xla < vocab)) and np.all((graph >= 0) & (graph < vocab))
    first_token = float(np.mean(graph[:, 1] == reference[:, 1]))
    sequence_tokens = float(np.mean(graph[:, 1:] == reference[:, 1:]))
    xla_graph = float(np.mean(xla == graph))
    report_figure(f"{family} bfloat16 weights, beam {num_beams}: ids vs float32 and XLA vs graph",
                  first_token_agreement=first_token, token_agreement=sequence_tokens,
                  xla_graph_agreement=xla_graph)
    assert first_token >= MIN_FIRST_TOKEN_AGREEMENT
    assert sequence_tokens >= MIN_SEQUENCE_TOKEN_AGREEMENT
    assert xla_graph >= MIN_XLA_GRAPH_TOKEN_AGREEMENT


def test_savedmodel_export_stores_and_serves_bfloat16_weights(tiny_m2m100_float_export,
                                                              tmp_path):
    """`tfmodels export --dtype bfloat16`: the SavedModel's model variables are bfloat16
    (half the float32 export's bytes) and its default signature serves the bfloat16
    model's translations."""
    from savedmodel.checkpoint import load_checkpoint

    checkpoint, float_dir, bf16_dir = export_variant(
        tiny_m2m100_float_export, tmp_path, "bf16", ["--dtype", "bfloat16"])
    info = export_info(bf16_dir)
    assert info["settings"]["dtype"] == "bfloat16" and info["dtype"] == "bfloat16"
    float_counts = variable_elements_by_dtype(float_dir)
    bf16_counts = variable_elements_by_dtype(bf16_dir)
    assert set(float_counts) == {"float32"} and set(bf16_counts) == {"bfloat16"}
    assert bf16_counts["bfloat16"] == float_counts["float32"]

    model, tokenizer = load_checkpoint(checkpoint, dtype="bfloat16")
    assert_serves_the_models_translations(bf16_dir, model, tokenizer)


def test_export_dtype_errors_name_the_problem(tmp_path):
    from savedmodel.export import export_savedmodel
    from savedmodel.export_settings import ExportSettings

    with pytest.raises(ValueError, match="dtype must be one of float32, bfloat16, got 'float16'"):
        ExportSettings(dtype="float16")
    model = load_golden_model("mt5")
    with pytest.raises(ValueError, match="settings.dtype is 'bfloat16' but the model passed in "
                                         "is 'float32'"):
        export_savedmodel(None, str(tmp_path), ExportSettings(dtype="bfloat16"), model=model,
                          tokenizer=object())


def test_command_lines_offer_the_weight_dtypes():
    """Every command line that loads a model offers `--dtype` with the export's dtypes."""
    from savedmodel.export_settings import WEIGHT_DTYPES
    from tfmodels.cli import build_parser

    parser = build_parser()
    for command in (["translate", "x", "--src", "en", "--tgt", "de"], ["demo"], ["export", "c", "o"],
                    ["convert", "c", "o"]):
        assert parser.parse_args(command).dtype is None
        for dtype in WEIGHT_DTYPES:
            assert parser.parse_args(command + ["--dtype", dtype]).dtype == dtype
        with pytest.raises(SystemExit):
            parser.parse_args(command + ["--dtype", "float16"])


def test_bundled_translator_in_bfloat16_translates_like_float32():
    """`tfmodels translate/demo --dtype bfloat16` on the bundled (trained) translator: a
    trained model's choices are rarely close calls, so bfloat16 rounding should change
    few of its translations."""
    import json
    import os

    from tfmodels import BUNDLED_TRANSLATOR_DIR
    from tfmodels.cli import DEMO_EXAMPLES_FILE, Translator

    with open(os.path.join(BUNDLED_TRANSLATOR_DIR, DEMO_EXAMPLES_FILE), encoding="utf-8") as f:
        examples = [e for e in json.load(f)["examples"] if e["tgt_lang"] in ("de", "fr")]
    texts = sorted({e["source"] for e in examples})[:12]
    float_translator = Translator(BUNDLED_TRANSLATOR_DIR)
    bf16_translator = Translator(BUNDLED_TRANSLATOR_DIR, dtype="bfloat16")
    assert {w.dtype for w in bf16_translator.model.weights} == {"bfloat16"}
    for tgt in ("de", "fr"):
        expected = float_translator.translate(texts, tgt=tgt, num_beams=1, max_new_tokens=16)
        got = bf16_translator.translate(texts, tgt=tgt, num_beams=1, max_new_tokens=16)
        same = sum(a == b for a, b in zip(expected, got))
        assert same >= 0.75 * len(texts), list(zip(expected, got))
        assert all(got), got
