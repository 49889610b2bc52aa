"""Generation without PyTorch: golden parity, XLA vs graph, sampling, buckets, errors,
`GenerationConfig` and export.

The golden outputs in `tests/fixtures/generation/golden.json` were produced by
transformers 4.57 PyTorch `generate` on the two tiny checkpoints next to them (see
`make_generation_fixture.py`); `test_generation_parity.py` repeats the comparison live
(and with more options) where torch is installed.
"""

import dataclasses
import json
import os
import time

import numpy as np
import pytest
import tensorflow as tf

import test_generation_support as support
from tfmodels import M2M100Config, M2M100ForConditionalGeneration, MT5Config
from tfmodels.generation import (
    GenerationConfig,
    bucket_size,
    compiled_functions,
    generate_graph,
    trace_count,
)
from helpers import M2M100_418M_CONFIG_JSON, optimized_hlo


# Sequence scores sum a dozen float32 log-probabilities whose products XLA and the plain
# graph reduce in different orders: a few float32 ulps of the score, relative to its size
# (seen: 1.03e-5 on -2.454).
XLA_GRAPH_SCORE_TOLERANCE = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def models():
    """The fixture checkpoints, loaded once (compiled searches are cached per model)."""
    return {family: support.load_fixture_model(family) for family in support.FAMILIES}


@pytest.fixture(scope="module")
def golden():
    return support.load_golden()


def _inputs(golden, family):
    return (np.array(golden[family]["input_ids"]), np.array(golden[family]["attention_mask"]))


# ------------------------------------------------------------------------------ golden parity
@pytest.mark.parametrize("family", sorted(support.FAMILIES))
def test_golden_parity(models, golden, family):
    """Same ids (and beam scores within 1e-4) as the reference for every recorded case:
    greedy, min_new_tokens, beam 4 with length penalties 0.6 / 1.5 / 2.0 and early_stopping
    True / False / "never", num_return_sequences, forced BOS (scalar and per example)."""
    cases = golden[family]["cases"]
    assert {case["name"] for case in cases} == {name for name, _ in support.golden_cases(family)}
    _assert_golden_cases(models[family], golden, family, family)


def _assert_golden_cases(model, golden, family, label, **extra_options):
    """`model` generates every recorded case of `family` as the reference did."""
    input_ids, attention_mask = _inputs(golden, family)
    for case in golden[family]["cases"]:
        options = support.our_options(case["options"], len(input_ids))
        sequences, scores = support.our_generate(model, input_ids, attention_mask,
                                                 **options, **extra_options)
        support.assert_generation_matches(
            sequences, scores, case["expected"], support.fill_token(family, options),
            f"{label}/{case['name']}",
        )


def test_in_out_lm_head_layout_generates_the_same_ids(golden, tmp_path, monkeypatch):
    """mT5 with `lm_head_layout="in_out"` (the head stored [d_model, vocab], not the default
    [vocab, d_model]) loads the same checkpoint, generates every golden case (XLA and plain
    graph, with the projections' panel products forced on for the small fixture), writes
    back the same reference tensors and keeps its layout through a `.keras` file."""
    import keras

    from tfmodels import MT5ForConditionalGeneration

    _force_panel_products(monkeypatch)
    directory = os.path.join(support.GENERATION_FIXTURE_DIR, "mt5")
    model = MT5ForConditionalGeneration.from_pretrained(directory, lm_head_layout="in_out")
    reference = support.load_fixture_model("mt5")
    config = model.config
    assert tuple(model.lm_head.kernel.shape) == (config.d_model, config.vocab_size)
    assert tuple(reference.lm_head.kernel.shape) == (config.vocab_size, config.d_model)

    for jit_compile in (True, False):
        _assert_golden_cases(model, golden, "mt5", f"in_out head/jit={jit_compile}",
                             jit_compile=jit_compile)

    ours, theirs = model.hf_state_dict(), reference.hf_state_dict()
    assert ours.keys() == theirs.keys()
    for name in ours:
        np.testing.assert_array_equal(np.asarray(ours[name]), np.asarray(theirs[name]), name)

    path = str(tmp_path / "in_out.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.lm_head_layout == "in_out"
    np.testing.assert_array_equal(loaded.lm_head.kernel.numpy(), model.lm_head.kernel.numpy())
    # A file written before the option existed has no "lm_head_layout": its head is in_out.
    file_config = dict(model.get_config())
    del file_config["lm_head_layout"]
    assert MT5ForConditionalGeneration.from_config(file_config).lm_head_layout == "in_out"
    with pytest.raises(ValueError, match="lm_head_layout"):
        MT5ForConditionalGeneration(config, lm_head_layout="rows")


def test_golden_outputs_end_at_different_steps(golden):
    for family in support.FAMILIES:
        for case in golden[family]["cases"]:
            if case["name"] in ("greedy", "beam4_lp1.5_no_early_stop"):
                lengths = support.finish_lengths(
                    [ids for row in case["expected"] for ids, _ in row], support.FAMILIES[family][2]
                )
                assert len(set(lengths)) >= 2, (family, case["name"], lengths)


# ------------------------------------------------------------------------- XLA vs plain graph
@pytest.mark.parametrize(
    "family,options",
    [
        ("mt5", dict(max_new_tokens=12)),
        ("mt5", dict(max_new_tokens=12, num_beams=3, length_penalty=0.7, num_return_sequences=2,
                     no_repeat_ngram_size=2, repetition_penalty=1.2, min_new_tokens=2)),
        ("m2m100", dict(max_new_tokens=12, num_beams=4, forced_bos_token_id=[5, 7, 9, 11, 13, 15, 17, 19])),
        ("m2m100", dict(max_new_tokens=12, do_sample=True, top_k=20, top_p=0.9, temperature=0.8,
                        num_return_sequences=2, seed=11)),
    ],
    ids=["greedy", "beam_processors", "beam_forced_bos", "sampling"],
)
def test_xla_and_graph_paths_agree(models, golden, family, options):
    model = models[family]
    input_ids, attention_mask = _inputs(golden, family)
    with_xla = support.our_generate(model, input_ids, attention_mask, jit_compile=True, **options)
    without = support.our_generate(model, input_ids, attention_mask, jit_compile=False, **options)
    np.testing.assert_array_equal(with_xla[0], without[0])
    if with_xla[1] is not None:
        np.testing.assert_allclose(with_xla[1], without[1], **XLA_GRAPH_SCORE_TOLERANCE)


# ----------------------------------------------------------------------------------- sampling
SAMPLE = dict(max_new_tokens=12, do_sample=True, top_k=0, num_return_sequences=2)


def test_sampling_is_reproducible_with_a_seed(models, golden):
    model = models["mt5"]
    input_ids, attention_mask = _inputs(golden, "mt5")
    first = model.generate(input_ids, attention_mask=attention_mask, seed=7, **SAMPLE).numpy()
    again = model.generate(input_ids, attention_mask=attention_mask, seed=7, **SAMPLE).numpy()
    other = model.generate(input_ids, attention_mask=attention_mask, seed=8, **SAMPLE).numpy()
    np.testing.assert_array_equal(first, again)
    assert first.shape[0] == 2 * len(input_ids)
    assert first.shape != other.shape or (first != other).any()
    # The two samples of an input are independent draws.
    assert (first[0::2] != first[1::2]).any()
    # tf.random.set_seed makes seed-less calls reproducible too.
    tf.random.set_seed(3)
    seedless = model.generate(input_ids, attention_mask=attention_mask, **SAMPLE).numpy()
    tf.random.set_seed(3)
    np.testing.assert_array_equal(
        seedless, model.generate(input_ids, attention_mask=attention_mask, **SAMPLE).numpy()
    )


def test_top_k_1_sampling_equals_greedy(models, golden):
    model = models["m2m100"]
    input_ids, attention_mask = _inputs(golden, "m2m100")
    greedy = model.generate(input_ids, attention_mask=attention_mask, max_new_tokens=12)
    sampled = model.generate(input_ids, attention_mask=attention_mask, max_new_tokens=12,
                             do_sample=True, top_k=1, temperature=0.7, seed=5, jit_compile=False)
    np.testing.assert_array_equal(greedy.numpy(), sampled.numpy())


def _first_token_probabilities(model, input_ids, attention_mask, temperature=1.0):
    start = model.generation_config.decoder_start_token_id
    logits = model(input_ids=input_ids, attention_mask=attention_mask,
                   decoder_input_ids=np.full([len(input_ids), 1], start)).logits
    return tf.nn.softmax(logits[:, 0, :] / temperature, axis=-1).numpy().astype(np.float64)


def test_sampling_distribution_matches_softmax(models, golden):
    """First tokens of 4096 samples follow softmax(logits / T) (each frequency within five
    binomial standard deviations); with top_k and top_p every sample stays inside both the
    k best tokens and the nucleus."""
    model = models["m2m100"]
    input_ids, attention_mask = _inputs(golden, "m2m100")
    input_ids, attention_mask = input_ids[3:4], attention_mask[3:4]
    samples = 4096
    temperature = 1.7
    sequences = model.generate(
        input_ids, attention_mask=attention_mask, max_new_tokens=1, do_sample=True, top_k=0,
        temperature=temperature, num_return_sequences=samples, seed=2024, jit_compile=False,
    ).numpy()
    assert sequences.shape == (samples, 2)
    expected = _first_token_probabilities(model, input_ids, attention_mask, temperature)[0]
    observed = np.bincount(sequences[:, 1], minlength=expected.size) / samples
    tolerance = 5 * np.sqrt(expected * (1 - expected) / samples) + 1.0 / samples
    assert (np.abs(observed - expected) <= tolerance).all(), np.abs(observed - expected).max()
    assert (expected > 0.02).sum() >= 5  # the check covers a real spread of tokens

    # top_k=4 first, then the 0.6 nucleus of what is left (renormalised), as the reference.
    top4 = np.argsort(-expected)[:4]
    renormalised = np.sort(expected[top4] / expected[top4].sum())  # ascending
    removed = np.cumsum(renormalised) <= 1.0 - 0.6
    kept = set(np.argsort(-expected)[: 4 - int(removed.sum())])
    assert 2 <= len(kept) < 4, kept
    filtered = model.generate(input_ids, attention_mask=attention_mask, max_new_tokens=1,
                              do_sample=True, top_k=4, top_p=0.6, temperature=temperature,
                              num_return_sequences=samples, seed=1, jit_compile=False).numpy()
    assert set(filtered[:, 1]) == kept  # all of the kept tokens show up, nothing else


def test_beam_sampling_is_reproducible(models, golden):
    model = models["mt5"]
    input_ids, attention_mask = _inputs(golden, "mt5")
    options = dict(max_new_tokens=8, num_beams=3, do_sample=True, return_dict_in_generate=True,
                   jit_compile=False)
    first = model.generate(input_ids, attention_mask=attention_mask, seed=1, **options)
    again = model.generate(input_ids, attention_mask=attention_mask, seed=1, **options)
    np.testing.assert_array_equal(first.sequences.numpy(), again.sequences.numpy())
    assert first.sequences_scores.shape == (len(input_ids),)
    assert np.all(np.isfinite(first.sequences_scores.numpy()))


# ------------------------------------------------------------------------ buckets / recompiles
def test_bucket_sizes():
    assert [bucket_size(n) for n in (1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 100)] == [
        1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 128
    ]
    assert bucket_size(3, minimum=8) == 8
    # At most a third of any bucket is padding.
    assert all(bucket_size(n) < 1.5 * n + 1 for n in range(1, 2000))


def test_lengths_within_a_bucket_reuse_one_compiled_function(models):
    """Different batch sizes, source lengths and max_new_tokens inside one bucket: the
    cache of compiled functions does not grow, nothing is traced again, and later calls
    are far faster than the compiling one (no XLA recompilation either)."""
    model = models["mt5"]
    rng = np.random.RandomState(0)

    def call(batch, length, max_new_tokens, min_new_tokens=None):
        input_ids = rng.randint(4, 64, size=(batch, length))
        mask = np.ones_like(input_ids)
        mask[0, length // 2:] = 0
        started = time.perf_counter()
        out = model.generate(input_ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                             min_new_tokens=min_new_tokens, num_beams=2, length_penalty=1.3)
        return out, time.perf_counter() - started

    # Buckets: batch 6, source 16, KV cache 16 (max_length 14-17 less the unfed last token).
    _, first_seconds = call(batch=5, length=13, max_new_tokens=13)
    functions = len(compiled_functions(model))
    traces = trace_count()
    later = []
    for batch, length, max_new, min_new in [(6, 16, 16, None), (5, 14, 14, 3), (6, 15, 15, None),
                                            (5, 13, 13, 13)]:
        out, seconds = call(batch, length, max_new, min_new)
        assert out.shape[0] == batch
        later.append(seconds)
    assert len(compiled_functions(model)) == functions
    assert trace_count() == traces
    assert max(later) < first_seconds / 3, (first_seconds, later)


@pytest.mark.parametrize("family", sorted(support.FAMILIES))
def test_later_source_buckets_share_one_trace(family):
    """A search's first source bucket has a trace of its own; the second gets one with the
    source length open, which every later source bucket reuses (XLA compiles it for the
    new shape), and each gives the ids the plain graph gives."""
    model = support.load_fixture_model(family)  # its own cache of compiled searches
    rng = np.random.RandomState(1)
    options = dict(max_new_tokens=5, min_new_tokens=2, num_beams=2)
    traces = trace_count()
    # Source buckets 8, 16, 32, 8; each traces an XLA and a plain-graph search or none.
    for length, new_traces in [(7, 2), (13, 2), (30, 0), (6, 0)]:
        ids = rng.randint(4, 64, size=(2, length))
        under_xla = model.generate(ids, **options).numpy()
        plain = model.generate(ids, jit_compile=False, **options).numpy()
        np.testing.assert_array_equal(under_xla, plain)
        assert trace_count() == traces + new_traces, length
        traces = trace_count()
    source_lengths = sorted(str(plan.source_length) for plan, jit in compiled_functions(model))
    assert source_lengths == ["8", "8", "None", "None"]  # XLA and plain graph each


def test_kv_cache_bucket_leaves_out_the_token_never_fed_back(models, golden):
    """The last buffer position is generated but never fed to the decoder, so the cache is
    bucketed on `max_length - 1`: 32 new tokens after the start token (max_length 33) take
    a 32-slot cache and a 33-token buffer (not 48 and 48), one token more takes the next
    bucket; both still produce every requested token."""
    model = models["mt5"]
    input_ids, attention_mask = _inputs(golden, "mt5")
    input_ids, attention_mask = input_ids[:2], attention_mask[:2]
    for max_new_tokens, buffer_length in [(32, 33), (33, 49)]:
        before = set(compiled_functions(model))
        out = model.generate(input_ids, attention_mask=attention_mask,
                             max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens)
        assert out.shape == (2, 1 + max_new_tokens)
        (plan, _), = [key for key in compiled_functions(model) if key not in before]
        assert plan.buffer_length == buffer_length


def test_output_length_is_the_longest_row(models, golden):
    """Batch padding and buffer buckets are stripped: the output has the input's batch and
    is as long as the longest generated row among the inputs given, as the reference
    returns it."""
    model = models["mt5"]
    input_ids, attention_mask = _inputs(golden, "mt5")
    case = next(c for c in golden["mt5"]["cases"] if c["name"] == "greedy")
    full = np.array([ids for row in case["expected"] for ids, _ in row])
    ends = support.finish_lengths(full, eos=1)
    finished_rows = [row for row, end in enumerate(ends) if end > 0]
    assert len(finished_rows) < len(ends)
    out = model.generate(input_ids[finished_rows], attention_mask=attention_mask[finished_rows],
                         max_new_tokens=12, jit_compile=False).numpy()
    longest = 1 + max(ends[row] for row in finished_rows)
    assert out.shape == (len(finished_rows), longest) and longest < full.shape[1]
    np.testing.assert_array_equal(out, full[finished_rows, :longest])
    assert (out[:, 0] == 0).all()  # decoder start token first


# ------------------------------------------------------------------- vocabulary restriction
@pytest.mark.parametrize("family,jit_compile", [("mt5", True), ("m2m100", False)])
def test_output_vocabulary_restriction(models, golden, family, jit_compile):
    """`output_token_ids`: restricted to the tokens unrestricted greedy decoding produces,
    greedy decoding is unchanged (untied and tied LM heads); without one of them, that
    token never appears and only allowed ids (plus EOS / pad) do."""
    model = models[family]
    input_ids, attention_mask = _inputs(golden, family)
    full = model.generate(input_ids, attention_mask=attention_mask, max_new_tokens=12).numpy()
    produced = np.unique(full[:, 1:])
    same = model.generate(input_ids, attention_mask=attention_mask, max_new_tokens=12,
                          output_token_ids=produced, jit_compile=jit_compile).numpy()
    np.testing.assert_array_equal(same, full)
    eos, pad = support.FAMILIES[family][2], support.FAMILIES[family][3]
    common = max((t for t in produced if t not in (eos, pad)), key=lambda t: (full == t).sum())
    allowed = [t for t in produced if t != common] + list(range(20, 40))
    restricted = model.generate(input_ids, attention_mask=attention_mask, max_new_tokens=12,
                                output_token_ids=allowed, jit_compile=jit_compile).numpy()
    assert common not in restricted[:, 1:]
    assert set(restricted[:, 1:].ravel()) <= set(allowed) | {eos, pad}


# ------------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize(
    "arguments,error,message",
    [
        (dict(input_ids=np.zeros([0, 4], np.int32)), ValueError, "empty batch"),
        (dict(input_ids=np.ones([4], np.int32)), ValueError, "rank 2"),
        (dict(input_ids=np.ones([2, 3], np.float32)), TypeError, "integer token ids"),
        (dict(input_ids=[[5, 6, 999]]), ValueError, "outside the vocabulary"),
        (dict(input_ids=[[5, 6, 1]], attention_mask=[[1, 1]]), ValueError, "does not match"),
        (dict(input_ids=[[5, 6, 1]], attention_mask=[[0, 0, 0]]), ValueError, "no attended"),
        (dict(input_ids=[[5, 6, 1]], attention_mask=[[2, 1, 1]]), ValueError, "only 0 and 1"),
        (dict(input_ids=[[5, 1]], max_new_tokens=0), ValueError, "max_new_tokens"),
        (dict(input_ids=[[5, 1]], num_return_sequences=3, num_beams=2), ValueError, "num_return_sequences"),
        (dict(input_ids=[[5, 1]], num_return_sequences=2), ValueError, "Greedy"),
        (dict(input_ids=[[5, 1]], num_beams=0), ValueError, "num_beams"),
        (dict(input_ids=[[5, 1]], do_sample=True, temperature=0.0), ValueError, "temperature"),
        (dict(input_ids=[[5, 1]], top_p=1.5), ValueError, "top_p"),
        (dict(input_ids=[[5, 1]], repetition_penalty=0.0), ValueError, "repetition_penalty"),
        (dict(input_ids=[[5, 1]], repetition_penalty=float("nan")), ValueError, "finite"),
        (dict(input_ids=[[5, 1]], do_sample=True, temperature=float("nan")), ValueError, "finite"),
        (dict(input_ids=[[5, 1]], num_beams=2, length_penalty=float("nan")), ValueError, "finite"),
        (dict(input_ids=[[5, 1]], forced_eos_token_id=64), ValueError, "forced_eos_token_id=64"),
        (dict(input_ids=[[5, 1]], forced_eos_token_id=-3), ValueError, "forced_eos_token_id=-3"),
        (dict(input_ids=[[5, 1]], num_beams=2, return_dict_in_generate=True, output_scores=True),
         ValueError, "not supported.*output_scores"),
        (dict(input_ids=[[5, 1]], early_stopping="sometimes"), ValueError, "early_stopping"),
        (dict(input_ids=[[5, 1]], max_length=1), ValueError, "max_length"),
        (dict(input_ids=[[5, 1]], forced_bos_token_id=[3, 4]), ValueError, "shape"),
        (dict(input_ids=[[5, 1]], forced_bos_token_id=640), ValueError, "outside"),
        (dict(input_ids=[[5, 1]], decoder_input_ids=[[0, 3], [0, 4]]), ValueError, "batch"),
        (dict(input_ids=[[5, 1]], num_beam=4), TypeError, "unexpected options: num_beam"),
        (dict(input_ids=[[5, 1]], num_beam_groups=2), ValueError, "not supported"),
        (dict(input_ids=None), ValueError, "input_ids"),
        (dict(input_ids=[[5, 1]], seed=[1, 2, 3], do_sample=True), ValueError, "seed"),
        (dict(input_ids=[[5, 1]], output_token_ids=[]), ValueError, "output_token_ids"),
        (dict(input_ids=[[5, 1]], output_token_ids=[3, 64]), ValueError, "outside"),
    ],
)
def test_bad_inputs_raise_clear_errors(models, arguments, error, message):
    arguments = dict(arguments)
    input_ids = arguments.pop("input_ids")
    with pytest.raises(error, match=message):
        models["mt5"].generate(input_ids, **arguments)


def test_numpy_integer_options_count_as_integers(models):
    plain = models["mt5"].generate([[5, 6, 1]], num_beams=2, max_new_tokens=3).numpy()
    numpy_ints = models["mt5"].generate([[5, 6, 1]], num_beams=np.int64(2),
                                        max_new_tokens=np.int32(3)).numpy()
    np.testing.assert_array_equal(numpy_ints, plain)


def test_forced_bos_none_turns_the_checkpoints_forcing_off(models):
    """As in the reference: `forced_bos_token_id=None` passed to generate() overrides the
    checkpoint's generation config; left out, the config's token is forced."""
    model = models["mt5"]
    saved = model.generation_config
    try:
        model.generation_config = saved.copy()
        model.generation_config.forced_bos_token_id = 7
        forced = model.generate([[5, 6, 1]], max_new_tokens=3).numpy()
        free = model.generate([[5, 6, 1]], max_new_tokens=3, forced_bos_token_id=None).numpy()
    finally:
        model.generation_config = saved
    plain = model.generate([[5, 6, 1]], max_new_tokens=3).numpy()
    assert forced[0, 1] == 7
    np.testing.assert_array_equal(free, plain)


def test_generate_needs_an_lm_head():
    from tfmodels import MT5EncoderModel

    encoder = MT5EncoderModel(MT5Config(**support.GEN_MT5))
    with pytest.raises((TypeError, AttributeError), match="LM head|generate"):
        from tfmodels.generation import generate

        generate(encoder, [[5, 1]])


# -------------------------------------------------------------------------- GenerationConfig
def test_generation_config_defaults_follow_the_model_config():
    config = M2M100Config.from_dict(M2M100_418M_CONFIG_JSON)
    defaults = GenerationConfig.from_model_config(config)
    # M2M100's config.json carries generation settings, as the reference reads them.
    assert (defaults.max_length, defaults.num_beams, defaults.early_stopping) == (200, 5, True)
    assert (defaults.decoder_start_token_id, defaults.eos_token_id, defaults.pad_token_id,
            defaults.bos_token_id) == (2, 2, 1, 0)
    assert (defaults.top_k, defaults.length_penalty, defaults.max_new_tokens) == (50, 1.0, None)
    mt5 = GenerationConfig.from_model_config(MT5Config(**support.GEN_MT5))
    assert (mt5.max_length, mt5.num_beams, mt5.decoder_start_token_id, mt5.eos_token_id) == (20, 1, 0, 1)


def test_generation_config_reads_and_writes_the_reference_file(tmp_path):
    values = {"decoder_start_token_id": 2, "eos_token_id": 2, "pad_token_id": 1,
              "num_beams": 4, "max_length": 64, "length_penalty": 0.8,
              "transformers_version": "4.57.6", "some_future_option": [1, 2]}
    (tmp_path / "generation_config.json").write_text(json.dumps(values))
    config = GenerationConfig.from_pretrained(str(tmp_path))
    assert (config.num_beams, config.max_length, config.length_penalty) == (4, 64, 0.8)
    assert config.extra["some_future_option"] == [1, 2]
    out = tmp_path / "out"
    config.save_pretrained(str(out))
    written = json.loads((out / "generation_config.json").read_text())
    assert {key: written[key] for key in values} == values
    assert GenerationConfig.from_pretrained(str(out)) == config
    with pytest.raises(FileNotFoundError):
        GenerationConfig.from_pretrained(str(tmp_path / "missing"))
    (tmp_path / "generation_config.json").write_text("{not json")
    with pytest.raises(ValueError, match="generation_config.json: invalid JSON"):
        GenerationConfig.from_pretrained(str(tmp_path))
    (tmp_path / "generation_config.json").write_text('"greedy"')
    with pytest.raises(ValueError, match="expected a JSON object, got str"):
        GenerationConfig.from_pretrained(str(tmp_path))


def test_checkpoint_generation_config_is_the_model_default(tmp_path, golden):
    """`from_pretrained` picks up generation_config.json and `generate` uses it without
    options (here: a beam search recorded in the golden file); call options override it;
    `save_pretrained` writes it back."""
    model = support.load_fixture_model("m2m100")
    assert model.generation_config.decoder_start_token_id == 2
    assert model.generation_config.extra.get("transformers_version") == "4.57.6"
    model.save_pretrained(str(tmp_path / "copy"))
    config_path = tmp_path / "copy" / "generation_config.json"
    values = json.loads(config_path.read_text())
    assert (values["decoder_start_token_id"], values["eos_token_id"], values["pad_token_id"]) == (2, 2, 1)
    case = next(c for c in golden["m2m100"]["cases"] if c["name"] == "beam4_lp1.5_no_early_stop")
    values.update(case["options"])
    config_path.write_text(json.dumps(values))
    reloaded = M2M100ForConditionalGeneration.from_pretrained(str(tmp_path / "copy"))
    assert (reloaded.generation_config.num_beams, reloaded.generation_config.length_penalty) == (4, 1.5)
    input_ids, attention_mask = _inputs(golden, "m2m100")
    out = reloaded.generate(input_ids, attention_mask=attention_mask,
                            return_dict_in_generate=True, jit_compile=False)
    support.assert_generation_matches(out.sequences.numpy(), out.sequences_scores.numpy(),
                                      case["expected"], 1, "generation_config.json")
    # Call options win over the file; a caller's config gets the model's special tokens.
    explicit = GenerationConfig(max_new_tokens=12)
    greedy = reloaded.generate(input_ids, attention_mask=attention_mask,
                               generation_config=explicit, jit_compile=False).numpy()
    expected = next(c for c in golden["m2m100"]["cases"] if c["name"] == "greedy")["expected"]
    support.assert_generation_matches(greedy, None, expected, 1, "explicit GenerationConfig")
    greedy_by_option = reloaded.generate(input_ids, attention_mask=attention_mask, num_beams=1,
                                         max_new_tokens=12, jit_compile=False).numpy()
    np.testing.assert_array_equal(greedy_by_option, greedy)


# ---------------------------------------------------------------------------------- export
def test_generate_graph_exports_to_a_saved_model(models, golden, tmp_path):
    """`generate_graph` inside an exporter's own tf.function (dynamic batch and length,
    per-example forced BOS = M2M100 target languages) is a plain graph of stock ops,
    survives a SavedModel round trip and reproduces the reference's ids."""
    model = models["m2m100"]
    input_ids, attention_mask = _inputs(golden, "m2m100")
    case = next(c for c in golden["m2m100"]["cases"] if c["name"] == "beam4_forced_bos_per_row")
    forced = np.array(support.PER_EXAMPLE_BOS[: len(input_ids)], np.int32)

    module = tf.Module()
    module.model = model

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32),
                                  tf.TensorSpec([None, None], tf.int32),
                                  tf.TensorSpec([None], tf.int32)])
    def serve(input_ids, attention_mask, target_language):
        outputs = generate_graph(model, input_ids, attention_mask, target_language,
                                 max_new_tokens=12, num_beams=4)
        return {"sequences": outputs["sequences"]}

    module.serve = serve
    graph_ops = {op.type for op in serve.get_concrete_function().graph.get_operations()}
    assert not graph_ops & {"EagerPyFunc", "PyFunc", "PyFuncStateless"}
    tf.saved_model.save(module, str(tmp_path / "saved"))
    restored = tf.saved_model.load(str(tmp_path / "saved"))
    for rows in (len(input_ids), 3):
        sequences = restored.serve(tf.constant(input_ids[:rows], tf.int32),
                                   tf.constant(attention_mask[:rows], tf.int32),
                                   tf.constant(forced[:rows]))["sequences"].numpy()
        support.assert_generation_matches(sequences, None, case["expected"][:rows], 1,
                                          f"SavedModel, {rows} rows", check_scores=False)


def test_compiled_searches_are_never_evicted_and_a_growing_cache_is_named(models, golden,
                                                                         monkeypatch):
    """TensorFlow keeps every XLA program until the process ends: evicting a search would
    only compile (and hold) it again. The cache keeps them all and warns as it grows."""
    import importlib

    generate_module = importlib.import_module("tfmodels.generation.generate")

    model = models["mt5"]
    input_ids, attention_mask = _inputs(golden, "mt5")
    generate_module.clear_compiled_functions(model)
    model.generate(input_ids, attention_mask=attention_mask, max_new_tokens=2, jit_compile=False)
    cache = compiled_functions(model)
    (plan, jit_compile), first = next(iter(cache.items()))
    monkeypatch.setattr(generate_module, "COMPILED_SEARCHES_WARNING", 32)
    with pytest.warns(UserWarning, match=r"now has 32 compiled searches .* until the process"):
        for batch in range(1000, 1040):  # creating them traces nothing
            generate_module._compiled_search(
                model, dataclasses.replace(plan, batch_size=batch), jit_compile)
    assert len(cache) == 41 and cache[(plan, jit_compile)] is first
    generate_module.clear_compiled_functions(model)


def test_generate_graph_takes_the_configs_forced_bos_and_checks_the_prompt(models, golden):
    """Left out, `forced_bos_token_id` is the generation config's (as in `generate`); a
    prompt without the start token, which `generate_graph` cannot prepend, and an option
    it does not take, get errors that name them."""
    model = models["m2m100"]
    input_ids, attention_mask = _inputs(golden, "m2m100")
    config = model.generation_config.copy()
    config.forced_bos_token_id = 9
    expected = model.generate(input_ids, attention_mask=attention_mask, generation_config=config,
                              max_new_tokens=3, jit_compile=False).numpy()
    assert (expected[:, 1] == 9).all()

    def run(**options):
        return tf.function(lambda ids, mask: generate_graph(
            model, ids, mask, generation_config=config, max_new_tokens=3, **options))(
                tf.constant(input_ids, tf.int32), tf.constant(attention_mask, tf.int32))

    np.testing.assert_array_equal(run()["sequences"].numpy(), expected)
    assert (run(forced_bos_token_id=None)["sequences"].numpy()[:, 1] != 9).any()
    prompt = tf.fill([len(input_ids), 1], 9)  # no row begins with the start token 2
    with pytest.raises(tf.errors.InvalidArgumentError, match="must begin with the decoder start"):
        run(decoder_input_ids=prompt)
    with pytest.raises(TypeError, match=r"generate_graph\(\) got unexpected options: "
                                        r"output_token_ids.* and forced_bos_token_id, "
                                        "decoder_input_ids, seed$"):
        run(output_token_ids=[5, 6])


def test_decoding_lm_head_matches_compute_logits(models, monkeypatch):
    """The decoding loop's LM head arrangement computes the model's own logits, with and
    without XLA, for one row and for several rows (which XLA takes in panels; the limits
    are lowered so that the small fixture heads qualify)."""
    from tfmodels.generation.graph import lm_head_logits

    _force_panel_products(monkeypatch)
    for rows in (1, 5):
        hidden = tf.random.normal([rows, 24], seed=1)
        for model in models.values():
            expected = model.compute_logits(hidden[:, tf.newaxis, :])[:, 0, :].numpy()
            for jit_compile in (False, True):
                logits = tf.function(lambda h, m=model: lm_head_logits(m, h),
                                     jit_compile=jit_compile)(hidden)
                np.testing.assert_allclose(logits.numpy(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("width", [4 * 128112, 100003, 4 * 250112])
@pytest.mark.parametrize("jit_compile", [True, False])
def test_blocked_top_k_equals_tf_top_k(width, jit_compile):
    """The blocked top-k (blocks of 272 for m2m100's beams x vocabulary, a free reshape;
    padded blocks for a prime width; 256 for mT5's) returns exactly `tf.math.top_k`'s
    values and indices, ties (coarsely rounded scores) going to the lower index."""
    from tfmodels.generation.top_k import block_size_for, top_k

    assert block_size_for(4 * 128112) == 272 and (4 * 128112) % 272 == 0
    rng = np.random.RandomState(width % 1000)
    scores = tf.constant(np.round(rng.normal(size=[3, width]) * 4) / 4, tf.float32)
    fn = tf.function(lambda values: top_k(values, 8), jit_compile=jit_compile)
    values, indices = fn(scores)
    expected = tf.math.top_k(scores, 8)
    np.testing.assert_array_equal(values.numpy(), expected.values.numpy())
    np.testing.assert_array_equal(indices.numpy(), expected.indices.numpy())


@pytest.mark.parametrize(
    "width,members",
    [(250112, 4), (128112, 4), (4096, 3), (100, 2), (100003, 2)],
    ids=["mt5_beams", "m2m100_beams", "small_blocks", "fallback_short", "fallback_prime"],
)
@pytest.mark.parametrize("jit_compile", [True, False])
def test_vocab_major_top_k_equals_tf_top_k(width, members, jit_compile):
    """`top_k_vocab_major` on `[width, groups * members]` scores returns exactly
    `tf.math.top_k` of each group's `[members * width]` row (values, indices, ties to the
    lower index), with a static or an unknown number of columns; widths with no whole
    blocks fall back to the transposed row."""
    from tfmodels.generation.top_k import top_k_vocab_major

    groups, k = 3, 2 * members
    rng = np.random.RandomState(width % 1000 + members)
    scores_rw = np.round(rng.normal(size=[groups * members, width]) * 4) / 4  # many ties
    expected = tf.math.top_k(tf.constant(scores_rw.reshape(groups, members * width), tf.float32), k)
    scores_wr = tf.constant(scores_rw.T, tf.float32)
    for spec in (tf.TensorSpec([width, groups * members]), tf.TensorSpec([width, None])):
        fn = tf.function(lambda values: top_k_vocab_major(values, members, k),
                         input_signature=[spec], jit_compile=jit_compile)
        values, indices = fn(scores_wr)
        np.testing.assert_array_equal(values.numpy(), expected.values.numpy())
        np.testing.assert_array_equal(indices.numpy(), expected.indices.numpy())


@pytest.mark.parametrize("jit_compile", [False, True])
def test_vocab_major_top_k_within_bounds_is_exact_or_says_so(jit_compile):
    """`top_k_vocab_major_within_bounds` reads only the blocks with the highest bounds.
    When it reports `exact`, its values and indices are `tf.math.top_k`'s over each group's
    row (ties included); bounds that leave an unread block possibly in the top k, or ties
    at the k-th value, make it say it is not exact."""
    from tfmodels.generation.top_k import (
        block_maxima_vocab_major,
        top_k_vocab_major_within_bounds,
        vocab_major_block_size,
    )

    width, members, groups, k = 4096, 3, 2, 6
    block = vocab_major_block_size(width, k)
    rng = np.random.RandomState(3)
    scores_rw = rng.normal(size=[groups * members, width]).astype(np.float32)
    # Ties at the top: each group's best score again in its other members and blocks.
    for group in range(groups):
        best = scores_rw[group * members].max()
        for member, position in ((0, 7), (1, 2000), (2, 4095)):
            scores_rw[group * members + member, position] = best
    # Processed scores: bans (-inf), among them the leader of a block in each row.
    banned_rw = scores_rw.copy()
    banned_rw[:, rng.choice(width, 40, replace=False)] = -np.inf
    banned_rw[np.arange(groups * members), np.argmax(scores_rw, axis=1)] = -np.inf
    bounds_br = block_maxima_vocab_major(tf.constant(scores_rw.T, tf.float32), k)  # unbanned
    assert bounds_br.shape == [width // block, groups * members]

    def run(values_rw, bounds, blocks_to_read):
        fn = tf.function(
            lambda values_wr, bounds: top_k_vocab_major_within_bounds(
                values_wr, bounds, members, k, blocks_to_read),
            jit_compile=jit_compile)
        return fn(tf.constant(values_rw.T, tf.float32), bounds)

    def expected(values_rw):
        return tf.math.top_k(tf.constant(values_rw.reshape(groups, members * width), tf.float32), k)

    for values_rw in (scores_rw, banned_rw):
        for blocks_to_read in (k, 2 * k):
            values, indices, exact = run(values_rw, bounds_br, blocks_to_read)
            assert bool(exact) or blocks_to_read == k, blocks_to_read
            if bool(exact):
                np.testing.assert_array_equal(values.numpy(), expected(values_rw).values.numpy())
                np.testing.assert_array_equal(indices.numpy(), expected(values_rw).indices.numpy())
    # A block that might hold more than its neighbours but is not read: not exact.
    loose = bounds_br.numpy().copy()
    loose[np.argsort(loose[:, 0])[0], 0] = 1e9  # its worst block, made the best but unread
    assert not bool(run(scores_rw, tf.constant(loose), k)[2])
    # Every score equal: the unread blocks tie with the k-th value.
    flat_rw = np.zeros_like(scores_rw)
    assert not bool(run(flat_rw, block_maxima_vocab_major(tf.constant(flat_rw.T, tf.float32), k), k)[2])


def test_only_bans_at_marks_the_steps_whose_processors_only_ban():
    """Beam search bounds processed scores by unprocessed ones only at steps where every
    processor keeps or bans: not at a forced BOS / EOS step, and never with a repetition
    penalty (it raises negative scores' magnitudes, and lowers positive ones)."""
    from tfmodels.generation.logits_processors import (
        LogitsProcessing,
        ProcessorSpec,
        ProcessorValues,
    )

    def values(**forced):
        return ProcessorValues(
            max_length=tf.constant(6), min_length=tf.constant(3),
            repetition_penalty=tf.constant(1.3), temperature=tf.constant(1.0),
            top_p=tf.constant(1.0), **forced)

    spec = ProcessorSpec(vocab_size=50, eos_token_ids=(1,), allow_forced_bos=True,
                         no_repeat_ngram_size=2)
    forced = LogitsProcessing(spec, values(forced_bos_token_id=tf.constant([7, -1]),
                                           forced_eos_token_id=tf.constant(2)))
    assert [bool(forced.only_bans_at(tf.constant(step))) for step in range(1, 6)] == [
        False, True, True, True, False]
    unforced = LogitsProcessing(spec, values(forced_bos_token_id=tf.constant([-1, -1]),
                                             forced_eos_token_id=tf.constant(-1)))
    assert all(bool(unforced.only_bans_at(tf.constant(step))) for step in range(1, 6))
    no_forced_tokens = LogitsProcessing(spec, values())  # no forced BOS / EOS processors
    assert all(bool(no_forced_tokens.only_bans_at(tf.constant(step))) for step in range(1, 6))
    penalised = LogitsProcessing(
        dataclasses.replace(spec, use_repetition_penalty=True), values())
    assert not penalised.sets_scores_to_constants_only
    assert not bool(penalised.only_bans_at(tf.constant(3)))


def _record_bounded_beam_steps(monkeypatch):
    """Records each trace of beam search's block-bounded candidate step; returns the list."""
    from tfmodels.generation import search

    traced = []
    original = search.top_k_vocab_major_within_bounds

    def recording(*args, **kwargs):
        traced.append(args[0].shape)
        return original(*args, **kwargs)

    monkeypatch.setattr(search, "top_k_vocab_major_within_bounds", recording)
    return traced


def _count_full_beam_passes(monkeypatch):
    """A counter of the steps whose candidates came from a full pass over the scores
    (`top_k_vocab_major`, a compiled increment next to it)."""
    from tfmodels.generation import search

    counter = tf.Variable(0, dtype=tf.int32)
    original = search.top_k_vocab_major

    def counting(*args, **kwargs):
        with tf.control_dependencies([counter.assign_add(1)]):
            return tuple(tf.identity(t) for t in original(*args, **kwargs))

    monkeypatch.setattr(search, "top_k_vocab_major", counting)
    return counter


BOUNDED_BEAM_CASES = [
    ("bans", dict(max_new_tokens=12, num_beams=4, num_return_sequences=2, min_new_tokens=4,
                  no_repeat_ngram_size=2, length_penalty=1.5)),
    ("plain", dict(max_new_tokens=12, num_beams=3, early_stopping=True)),
    ("forced BOS", dict(max_new_tokens=8, num_beams=4, forced_bos_token_id=5)),
]


# In the slow suite (the default suite's time budget): the default suite's
# test_vocab_major_searches_generate_the_golden_ids takes the bounded steps for every golden
# beam case, and test_vocab_major_beam_search_never_materialises_transposed_scores compares
# them with the full pass.
@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(support.FAMILIES))
def test_bounded_beam_steps_equal_the_full_pass_and_fall_back_when_forced(
        golden, family, monkeypatch):
    """Beam steps that read candidates only from the blocks with the highest bounds give
    the full pass's sequences and scores, bit for bit. Those steps need no full pass
    unless forced (a forced BOS step takes one); a full pass taken every step for
    comparison shows the counter counts."""
    from tfmodels.generation import search

    _force_panel_products(monkeypatch)
    input_ids, attention_mask = _inputs(golden, family)
    bounded_model = support.load_fixture_model(family)
    full_model = support.load_fixture_model(family)
    bounded = _record_bounded_beam_steps(monkeypatch)
    full_passes = _count_full_beam_passes(monkeypatch)
    for name, options in BOUNDED_BEAM_CASES:
        full_passes.assign(0)
        got = support.our_generate(bounded_model, input_ids, attention_mask, **options)
        passes = int(full_passes.numpy())
        with monkeypatch.context() as patched:
            patched.setattr(search, "block_maxima_vocab_major", lambda *args: None)
            traces = len(bounded)
            full_passes.assign(0)
            want = support.our_generate(full_model, input_ids, attention_mask, **options)
            assert len(bounded) == traces and int(full_passes.numpy()) >= 8, name
        np.testing.assert_array_equal(got[0], want[0], f"{family} {name}")
        np.testing.assert_array_equal(got[1], want[1], f"{family} {name}")
        if name == "forced BOS":
            assert passes >= 1, (family, name)
        else:
            assert passes == 0, (family, name, passes)
    assert len(bounded) == len(BOUNDED_BEAM_CASES)


def _force_panel_products(monkeypatch):
    """Lowers the panel-product limits so the small fixtures' heads take panels under XLA."""
    from tfmodels.layers import products

    monkeypatch.setattr(products, "PANEL_PRODUCT_MIN_ELEMENTS", 0)
    monkeypatch.setattr(products, "MIN_PANEL_ROWS", 2)


def test_vocab_major_lm_head_is_taken_where_the_product_comes_out_that_way(monkeypatch):
    """Under XLA, several rows through an `[vocab, d_model]` float head (mT5's default
    "out_in" head, m2m100's tied embeddings) are a panel product whose output is
    `[vocab, rows]`: `lm_head_is_vocab_major` says so and `lm_head_logits_vocab_major`
    gives the model's own logits in that layout. So do `"int8_dynamic"` heads (tied or
    not) at 2-64 rows, whose int8 product is faster as `[vocab, rows]`. One row, the plain
    graph, mT5's "in_out" head and weight-only int8 heads keep `[rows, vocab]`."""
    from tfmodels import MT5ForConditionalGeneration
    from tfmodels.generation.graph import lm_head_is_vocab_major, lm_head_logits_vocab_major

    _force_panel_products(monkeypatch)
    mt5_in_out = MT5ForConditionalGeneration.from_pretrained(
        os.path.join(support.GENERATION_FIXTURE_DIR, "mt5"), lm_head_layout="in_out"
    )
    mt5_int8 = support.load_fixture_model("mt5")
    mt5_int8.quantize_weights("int8")
    models = {family: support.load_fixture_model(family) for family in support.FAMILIES}
    hidden = tf.random.normal([5, 24], seed=2)

    def decide(model, rows):
        return tf.function(lambda: tf.constant(lm_head_is_vocab_major(model, rows)),
                           jit_compile=True)().numpy()

    for family, model in models.items():
        assert decide(model, 5) and not decide(model, 1), family
        assert not lm_head_is_vocab_major(model, 5)  # eager / plain graph
        logits_vr = tf.function(lambda h, m=model: lm_head_logits_vocab_major(m, h),
                                jit_compile=True)(hidden)
        expected = model.compute_logits(hidden[:, tf.newaxis, :])[:, 0, :].numpy()
        np.testing.assert_allclose(logits_vr.numpy().T, expected, rtol=1e-5, atol=1e-5)
    assert not decide(mt5_in_out, 5) and not decide(mt5_int8, 5)
    for family, model in models.items():
        model.quantize_weights("int8_dynamic")
        assert decide(model, 5) and decide(model, 64) and not decide(model, 1), family
        assert not decide(model, 65) and not lm_head_is_vocab_major(model, 5), family
        logits_vr = tf.function(lambda h, m=model: lm_head_logits_vocab_major(m, h),
                                jit_compile=True)(hidden)
        expected = tf.function(lambda h, m=model: m.compute_logits(h[:, tf.newaxis, :]),
                               jit_compile=True)(hidden)[:, 0, :].numpy()
        np.testing.assert_array_equal(logits_vr.numpy().T, expected)


def test_vocab_major_searches_generate_the_golden_ids(golden, monkeypatch):
    """With the fixtures' heads taking panels, XLA's searches work on `[vocab, rows]`
    logits (checked: `lm_head_is_vocab_major` answered True while tracing): every golden
    case still comes out as the reference's (greedy, min_new_tokens, beam 4 with length
    penalties and early stopping modes, num_return_sequences, forced BOS), and beam
    processors and seeded sampling give the plain graph's ids and scores."""
    from tfmodels.generation import graph

    _force_panel_products(monkeypatch)
    answers = []
    decide = graph.lm_head_is_vocab_major

    def recorded(model, rows):
        answers.append(decide(model, rows))
        return answers[-1]

    monkeypatch.setattr(graph, "lm_head_is_vocab_major", recorded)
    bounded = _record_bounded_beam_steps(monkeypatch)
    for family in sorted(support.FAMILIES):
        model = support.load_fixture_model(family)
        answers.clear()
        bounded.clear()
        _assert_golden_cases(model, golden, family, f"{family}/vocab-major", jit_compile=True)
        assert answers and all(answers), (family, answers)
        assert bounded, family  # the beam cases scored their candidates from block bounds
        input_ids, attention_mask = _inputs(golden, family)
        for options in (
            dict(max_new_tokens=12, num_beams=3, length_penalty=0.7, num_return_sequences=2,
                 no_repeat_ngram_size=2, repetition_penalty=1.2, min_new_tokens=2),
            dict(max_new_tokens=12, num_beams=4, num_return_sequences=3,
                 no_repeat_ngram_size=2, min_new_tokens=3),
            dict(max_new_tokens=12, do_sample=True, top_k=0, seed=11),
            dict(max_new_tokens=12, do_sample=True, num_beams=3, top_k=0, seed=11),
        ):
            with_xla = support.our_generate(model, input_ids, attention_mask, jit_compile=True,
                                            **options)
            without = support.our_generate(model, input_ids, attention_mask, jit_compile=False,
                                           **options)
            np.testing.assert_array_equal(with_xla[0], without[0], f"{family} {options}")
            if with_xla[1] is not None:
                np.testing.assert_allclose(with_xla[1], without[1], **XLA_GRAPH_SCORE_TOLERANCE)


def test_single_row_searches_take_the_head_in_row_slices_under_xla(golden, monkeypatch):
    """Batch-1 greedy under XLA multiplies its one row by the LM head as independent
    products over row slices (`products.single_row_slices()`, set to the AMD count on any
    machine; the threshold is lowered to the fixtures' head size, so that only the head
    qualifies), for mT5's untied head and m2m100's tied one alike, and gives the plain
    graph's ids."""
    from tfmodels.layers import products

    sliced_shapes = []
    sliced_product = products.sliced_single_row_product

    def recorded(inputs_1i, matrix_oi):
        sliced_shapes.append(tuple(matrix_oi.shape))
        return sliced_product(inputs_1i, matrix_oi)

    monkeypatch.setattr(products, "sliced_single_row_product", recorded)
    monkeypatch.setattr(products, "SINGLE_ROW_SLICES", products.AMD_SINGLE_ROW_SLICES)
    for family in sorted(support.FAMILIES):
        model = support.load_fixture_model(family)
        head_shape = (model.config.vocab_size, model.config.d_model)
        monkeypatch.setattr(products, "SINGLE_ROW_SLICE_MIN_ELEMENTS",
                            head_shape[0] * head_shape[1])
        input_ids, attention_mask = _inputs(golden, family)
        sliced_shapes.clear()
        for row in range(3):
            length = int(attention_mask[row].sum())
            ids, mask = input_ids[row:row + 1, :length], attention_mask[row:row + 1, :length]
            for options in (dict(max_new_tokens=12), dict(max_new_tokens=12, min_new_tokens=4)):
                with_xla = support.our_generate(model, ids, mask, jit_compile=True, **options)
                without = support.our_generate(model, ids, mask, jit_compile=False, **options)
                np.testing.assert_array_equal(with_xla[0], without[0], f"{family} row {row}")
        assert sliced_shapes and set(sliced_shapes) == {head_shape}, (family, sliced_shapes)


def _top_level_lines(hlo_text, skipped=()):
    """The instruction lines of an HLO module's non-fused computations (what the program
    materialises, as opposed to values computed inside a fused loop), leaving out the
    computations named in `skipped`."""
    import re

    computation = None
    for line in hlo_text.splitlines():
        header = re.match(r"^(?:ENTRY )?%?([\w.\-]+) .*\{$", line)
        if header:
            computation = header.group(1)
        elif line.startswith("}"):
            computation = None
        elif (computation and computation not in skipped
              and not re.match(r"(fused_|wrapped_|region_|.*_computation)", computation)):
            yield line


def _top_level_f32_shapes(hlo_text):
    """Shapes of the f32 arrays the non-fused computations of an HLO module produce."""
    import re

    produced = (re.match(r"\s*(?:ROOT )?%[\w.\-]+ = (f32\[[\d,]*\])", line)
                for line in _top_level_lines(hlo_text))
    return {match.group(1) for match in produced if match}


def _materialised_f32_sizes(hlo_text):
    """Element counts of the f32 arrays that the non-fused computations of an HLO module
    write (bitcasts and tuple reads are views), leaving out the branches of conditionals
    (code that runs only when taken)."""
    import re

    branches = set(re.findall(r"(?:true|false)_computation=%([\w.\-]+)", hlo_text))
    branches |= {name for group in re.findall(r"branch_computations=\{([^}]*)\}", hlo_text)
                 for name in re.findall(r"%([\w.\-]+)", group)}
    sizes = []
    for line in _top_level_lines(hlo_text, branches):
        produced = re.match(r"\s*(?:ROOT )?%[\w.\-]+ = f32\[([\d,]*)\]\S* ([\w\-]+)\(", line)
        if produced and produced.group(2) not in ("bitcast", "get-tuple-element", "parameter"):
            sizes.append(int(np.prod([int(d) for d in produced.group(1).split(",") if d])))
    return sizes


def test_vocab_major_beam_search_never_materialises_transposed_scores(monkeypatch):
    """The point of the vocabulary-major path: XLA's loops read a transposed
    `[rows, vocab]` at a stride of `rows` floats, a pass as slow as the head's product at
    mT5's size. Beam search over a panel-product head (4096 tokens, 2 x 3 beams, minimum
    length active) computes no f32 array shaped `[rows, vocab]` or `[batch, beams * vocab]`
    outside fused loops when it takes `[vocab, rows]` logits, where the `[rows, vocab]`
    path does (the check can fail), and both pick the same beams."""
    from tfmodels.generation import search
    from tfmodels.generation.logits_processors import (
        LogitsProcessing,
        ProcessorSpec,
        ProcessorValues,
    )
    from tfmodels.layers import products

    _force_panel_products(monkeypatch)
    vocab, width, batch, beams, buffer_length = 4096, 16, 2, 3, 8
    rows = batch * beams
    rng = np.random.RandomState(0)
    embeddings = tf.constant(rng.normal(size=[vocab, width]), tf.float32)
    head_oi = tf.constant(rng.normal(size=[vocab, width]), tf.float32)

    def search_fn(vocab_major):
        def step_fn(token_ids, state, cache_index):
            hidden = tf.gather(embeddings, token_ids[:, 0]) + state
            if vocab_major:
                logits = products.output_major_product(hidden, head_oi)
            else:
                logits = products.rows_times_transposed(hidden, head_oi)
            return logits, 0.5 * state + hidden

        def run(offset):
            values = ProcessorValues(
                max_length=tf.constant(buffer_length), min_length=tf.constant(4),
                repetition_penalty=tf.constant(1.0), temperature=tf.constant(1.0),
                top_p=tf.constant(1.0),
            )
            return search.beam_search(
                step_fn, lambda state, parents: tf.gather(state, parents),
                tf.zeros([rows, width]) + offset, tf.zeros([rows, buffer_length], tf.int32), 1,
                tf.constant(buffer_length),
                LogitsProcessing(ProcessorSpec(vocab_size=vocab, eos_token_ids=(1,)), values),
                tf.ones([batch], tf.bool), beams, vocab, (1,), tf.ones([buffer_length + 1]),
                tf.constant(False), tf.constant(False), vocab_major=vocab_major,
            )
        return run

    offset = tf.constant(0.0)
    transposed = {f"f32[{rows},{vocab}]", f"f32[{batch},{beams * vocab}]"}
    results = {}
    for vocab_major in (False, True):
        shapes = _top_level_f32_shapes(optimized_hlo(search_fn(vocab_major), offset))
        assert bool(shapes & transposed) == (not vocab_major), (vocab_major, shapes & transposed)
        results[vocab_major] = tf.function(search_fn(vocab_major), jit_compile=True)(offset)
    for with_rows, with_vocab in zip(results[False], results[True]):
        np.testing.assert_allclose(with_rows.numpy(), with_vocab.numpy(), atol=1e-5)

    # Scored from block bounds, a step writes two vocabulary-sized arrays (the logits and
    # their exponentials for the log-softmax's sum), where the full pass also writes the
    # processed scores it then reduces to block maxima.
    def vocabulary_sized_arrays(hlo_text):
        return sum(size == vocab * rows for size in _materialised_f32_sizes(hlo_text))

    assert vocabulary_sized_arrays(optimized_hlo(search_fn(True), offset)) == 2
    with monkeypatch.context() as patched:
        patched.setattr(search, "block_maxima_vocab_major", lambda *args: None)
        assert vocabulary_sized_arrays(optimized_hlo(search_fn(True), offset)) == 3
        full = tf.function(search_fn(True), jit_compile=True)(offset)
    for bounded_result, full_result in zip(results[True], full):
        np.testing.assert_array_equal(bounded_result.numpy(), full_result.numpy())


def test_vocabulary_exp_sum_stays_with_xla_reduction():
    """The beam search's log-softmax sum over a large `[vocab, rows]` (here 65536 x 8)
    is not handed to YNNPACK under XLA (TensorFlow 2.21 hands a plain
    `reduce_sum(exp(...))` of this size to it), and it is the same sum, compiled or not."""
    from tfmodels.generation import search

    shifted_vr = tf.random.stateless_normal([65536, 8], seed=[3, 4]) - 4.0
    expected = np.exp(shifted_vr.numpy().astype(np.float64)).sum(axis=0, keepdims=True)
    for jit_compile in (True, False):
        total = tf.function(search.exp_sum_vocab_major, jit_compile=jit_compile)(shifted_vr)
        np.testing.assert_allclose(total.numpy(), expected, rtol=1e-5)
    assert "__ynn_fusion" not in optimized_hlo(search.exp_sum_vocab_major, shifted_vr)


def test_step_dependent_processors_are_selects_under_xla():
    """Minimum length and forced BOS / EOS act only at some steps: a `tf.cond` in the plain
    graph (skipped at the other steps) and a select under XLA (a conditional there copies
    the whole score matrix in and out); both give the same scores at every step."""
    from tfmodels.generation.logits_processors import (
        LogitsProcessing,
        ProcessorSpec,
        ProcessorValues,
    )

    spec = ProcessorSpec(vocab_size=50, eos_token_ids=(1,), allow_forced_bos=True)

    def process(scores, cur_len):
        values = ProcessorValues(
            max_length=tf.constant(6), min_length=tf.constant(3),
            repetition_penalty=tf.constant(1.0), temperature=tf.constant(1.0),
            top_p=tf.constant(1.0), forced_bos_token_id=tf.constant([7, -1]),
            forced_eos_token_id=tf.constant(2),
        )
        return LogitsProcessing(spec, values)(scores, tf.zeros([2, 6], tf.int32), cur_len)

    scores = tf.random.stateless_normal([2, 50], seed=[1, 2])
    compiled, graph = tf.function(process, jit_compile=True), tf.function(process)
    for step in range(1, 6):
        cur_len = tf.constant(step)
        np.testing.assert_array_equal(compiled(scores, cur_len).numpy(),
                                      graph(scores, cur_len).numpy())
    assert float(graph(scores, tf.constant(1))[0, 7]) == 0.0  # forced BOS, row 0 only
    assert np.isinf(graph(scores, tf.constant(2))[1, 1])  # EOS blocked below min length
    assert float(graph(scores, tf.constant(5))[1, 2]) == 0.0  # forced EOS at max_length - 1
    hlo = optimized_hlo(process, scores, tf.constant(1))
    assert "conditional(" not in hlo
    ops = {op.type for op in graph.get_concrete_function(scores, tf.constant(1)).graph.get_operations()}
    assert ops & {"If", "StatelessIf"}


@pytest.mark.parametrize("family", sorted(support.FAMILIES))
def test_decode_step_past_the_end_of_the_cache_is_an_error(models, golden, family):
    """Writing tokens beyond the cache (or at a negative index) names the sizes instead of
    clamping (XLA) or dropping (plain graph) them; the last slot itself still works."""
    model = models[family]
    input_ids, attention_mask = _inputs(golden, family)
    states = model.encode(input_ids[:1], attention_mask[:1])["last_hidden_state"]
    cache = model.init_decoding_cache(states, 4)
    start = model.generation_config.decoder_start_token_id
    logits, _ = model.decode_step(np.full([1, 1], start), cache, 3,
                                  encoder_attention_mask=attention_mask[:1])
    assert logits.shape[:2] == (1, 1)
    with pytest.raises(ValueError, match="2 token.* at cache_index 3 do not fit a 4-slot cache"):
        model.decode_step(np.full([1, 2], start), cache, 3, encoder_attention_mask=attention_mask[:1])
    with pytest.raises(ValueError, match="cache_index -1"):
        model.decode_step(np.full([1, 1], start), cache, tf.constant(-1),
                          encoder_attention_mask=attention_mask[:1])
