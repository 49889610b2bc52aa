"""Greedy decoding through an int8 screen of the LM head (`model.enable_head_screening()`).

The screen's bounds must hold for every logit (rows of very different scales, zero rows,
inputs with outliers); the screened choice must be the float head's argmax, processors
included, and must say when it cannot decide (then the fallback's tokens are taken).
Models must generate exactly what they generate without the screen (both families,
every golden case, a vocabulary large enough that the screen keeps a small fraction of
it), with the screen deciding at every step, and the model-level switches must refuse
what the screen cannot serve.
"""

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

import test_generation_support as support
from tfmodels.generation import screening
from tfmodels.generation.screening import screened_greedy_tokens
from tfmodels.layers import int8_matrix
from tfmodels.layers.screened_head import ScreenedHead

FAMILIES = sorted(support.FAMILIES)


def _head(rows, width, seed=0):
    rng = np.random.default_rng(seed)
    # Row scales over four orders of magnitude, one all-zero row.
    head = rng.standard_normal((rows, width)) * 10.0 ** rng.uniform(-2, 2, (rows, 1))
    head[3] = 0.0
    return head.astype(np.float32)


def _screen(head, candidates=16):
    screen = ScreenedHead(*head.shape, candidates=candidates)
    screen.assign(head)
    return screen


# ------------------------------------------------------------------------------ the bounds
@pytest.mark.parametrize("jit_compile", [False, True])
def test_bounds_contain_every_float_logit(jit_compile):
    head = _head(3000, 48)
    screen = _screen(head)
    rng = np.random.default_rng(1)
    hidden = rng.standard_normal((5, 48)).astype(np.float32)
    hidden[1, 7] = 300.0  # one outlier dominates the row's int8 scale
    hidden[2] = 0.0
    lower_vr, upper_vr = tf.function(screen.logit_bounds_vocab_major,
                                     jit_compile=jit_compile)(hidden)
    exact_vr = (hidden.astype(np.float64) @ head.astype(np.float64).T).T
    assert lower_vr.shape == upper_vr.shape == (3000, 5)
    assert np.all(lower_vr.numpy() <= exact_vr) and np.all(exact_vr <= upper_vr.numpy())
    assert np.all(lower_vr.numpy()[:, 2] == 0) and np.all(upper_vr.numpy()[:, 2] == 0)
    # Tight enough to screen: the typical half-width is a small fraction of the spread.
    half_width = (upper_vr.numpy() - lower_vr.numpy()) / 2
    assert np.median(half_width[:, 0]) < 0.5 * np.std(exact_vr[:, 0])


def test_screened_head_checks_shapes_and_round_trips_its_config():
    screen = ScreenedHead(300, 8, candidates=5)
    with pytest.raises(ValueError, match=r"expected a \[300, 8\] matrix"):
        screen.assign(np.zeros([300, 9], np.float32))
    with pytest.raises(ValueError, match=r"inputs must be \[rows, 8\]"):
        screen.logit_bounds_vocab_major(tf.zeros([2, 3, 8]))
    with pytest.raises(ValueError, match="candidates must be at least 1"):
        ScreenedHead(300, 8, candidates=0)
    clone = ScreenedHead.from_config(screen.get_config())
    assert (clone.vocab_size, clone.in_dim, clone.candidates) == (300, 8, 5)


def test_assign_reads_a_variable_chunk_by_chunk_and_refuses_non_finite_weights(monkeypatch):
    head = _head(3000, 48)
    whole = _screen(head)
    monkeypatch.setattr(int8_matrix, "QUANTIZE_CHUNK_ROWS", 7)  # 429 chunks, a short last one
    chunked = _screen(tf.Variable(head))
    for expected, stored in zip(whole.weights, chunked.weights):
        np.testing.assert_array_equal(stored.numpy(), expected.numpy(), err_msg=stored.name)
    stored_before = [variable.numpy() for variable in chunked.weights]
    for bad_value in (np.nan, np.inf):
        bad_head = head.copy()
        bad_head[2998, 5] = bad_value  # in the last chunk: nothing may be stored before it
        with pytest.raises(ValueError, match="screened_head.*NaN or infinite"):
            chunked.assign(bad_head)
    for before, variable in zip(stored_before, chunked.weights):
        np.testing.assert_array_equal(variable.numpy(), before, err_msg=variable.name)


# ------------------------------------------------------------------------------ the choice
@pytest.mark.parametrize("rows", [1, 3, 8])
@pytest.mark.parametrize("jit_compile", [False, True])
def test_screened_tokens_are_the_float_argmax(rows, jit_compile):
    head = _head(5000, 32, seed=rows)
    screen = _screen(head)
    hidden = tf.random.stateless_normal([rows, 32], seed=[rows, 2])
    choose = tf.function(lambda h: screened_greedy_tokens(screen, h, head),
                         jit_compile=jit_compile)
    tokens, screened = choose(hidden)
    expected = np.argmax(hidden.numpy() @ head.T, axis=1)
    assert bool(screened)
    assert tokens.numpy().tolist() == expected.tolist()


@pytest.mark.parametrize("constants_only", [False, True])
def test_processors_act_on_the_bounds_and_the_candidates(constants_only):
    """A processor that bans each row's float argmax, and forces token 5 in the last row:
    the screen must pick the runner-ups and the forced token, which is only right if the
    processor reached the bounds (else the banned token keeps the best lower bound) and
    the candidates' scores (processed as a grid, or read off the processed bounds)."""
    head = _head(4000, 32, seed=5)
    screen = _screen(head)
    hidden = tf.random.stateless_normal([4, 32], seed=[7, 7])
    logits = hidden.numpy() @ head.T
    banned = np.argmax(logits, axis=1).astype(np.int32)

    def process_vr(scores_vr):
        token_v1 = tf.range(4000)[:, tf.newaxis]
        scores_vr = tf.where(tf.equal(token_v1, banned[tf.newaxis, :]), float("-inf"), scores_vr)
        forced_v1 = tf.where(tf.equal(token_v1, 5), 0.0, float("-inf"))
        return tf.concat([scores_vr[:, :3], forced_v1], axis=1)

    tokens, screened = tf.function(
        lambda h: screened_greedy_tokens(screen, h, head, process_vr=process_vr,
                                         process_sets_constants_only=constants_only),
        jit_compile=True,
    )(hidden)
    logits[np.arange(4), banned] = -np.inf
    assert bool(screened)
    assert tokens.numpy().tolist() == np.argmax(logits[:3], axis=1).tolist() + [5]


@pytest.mark.parametrize("jit_compile", [False, True])
def test_undecidable_rows_take_the_fallback(jit_compile):
    """Two rows of the head equal (their logits tie for every input) and above all others:
    the candidates cannot exclude the second copy's twin when only one fits, so the screen
    must report it cannot decide and return the fallback's tokens."""
    head = _head(2000, 16, seed=3)
    hidden = tf.random.stateless_normal([2, 16], seed=[1, 1])
    top = np.argmax(hidden.numpy() @ head.T, axis=1)
    head[1500] = head[top[0]]
    screen = _screen(head, candidates=1)
    sentinel = tf.fill([2], -7)
    tokens, screened = tf.function(
        lambda h: screened_greedy_tokens(screen, h, head, fallback_fn=lambda: sentinel),
        jit_compile=jit_compile,
    )(hidden)
    assert not bool(screened)
    assert tokens.numpy().tolist() == [-7, -7]
    # With room for both copies it decides, ties going to the lower id like tf.argmax.
    wider = _screen(head, candidates=4)
    tokens, screened = screened_greedy_tokens(wider, hidden, head)
    assert bool(screened) and int(tokens[0]) == min(top[0], 1500)


# ------------------------------------------------------------------------------ the models
@pytest.fixture(scope="module")
def golden():
    return support.load_golden()


@pytest.mark.parametrize("family", FAMILIES)
def test_screened_models_generate_every_golden_case(golden, family, monkeypatch):
    """The committed fixture checkpoints (64-token vocabularies): greedy, min_new_tokens,
    forced BOS (scalar and per example) and the beam cases, as the reference did."""
    model = support.load_fixture_model(family)
    _, traced = _count_fallbacks(monkeypatch)
    model.enable_head_screening()
    input_ids = np.array(golden[family]["input_ids"])
    attention_mask = np.array(golden[family]["attention_mask"])
    for case in golden[family]["cases"]:
        options = support.our_options(case["options"], len(input_ids))
        sequences, scores = support.our_generate(model, input_ids, attention_mask, **options)
        support.assert_generation_matches(
            sequences, scores, case["expected"], support.fill_token(family, options),
            f"{family}/screened/{case['name']}",
        )
    assert traced  # the greedy cases went through the screen


def _rows_end_at_different_steps(sequences, eos):
    """Some row ends (EOS) and not every row at the same step (-1: ran to the limit)."""
    lengths = support.finish_lengths(sequences, eos)
    return max(lengths) > 0 and len(set(lengths)) > 1


def _wide_vocab_model(family):
    """A small random model with a 3,000-token vocabulary (the screen keeps 128 of it; M2M100
    starts from token 0, so that its tied EOS row is not also the start embedding) whose
    EOS row copies (scaled) a token the model generates often, so that rows end at
    different steps (as the golden fixtures do; random weights alone never emit EOS)."""
    from tfmodels import M2M100Config, M2M100ForConditionalGeneration, MT5Config, MT5ForConditionalGeneration

    keras.utils.set_random_seed(11)
    common = dict(vocab_size=3000, d_model=32, pad_token_id=1 if family == "m2m100" else 0,
                  eos_token_id=2 if family == "m2m100" else 1)
    if family == "mt5":
        model = MT5ForConditionalGeneration(MT5Config(
            d_kv=8, num_heads=4, d_ff=64, num_layers=2, num_decoder_layers=2,
            decoder_start_token_id=0, **common))
    else:
        model = M2M100ForConditionalGeneration(M2M100Config(
            encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
            decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
            decoder_start_token_id=0, max_position_embeddings=64, **common))
    # Wider weights than the default initialisers (as the golden fixtures' models): with
    # these, every row would repeat one token.
    rng = np.random.default_rng(11)
    for weight in model.weights:
        shape = tuple(weight.shape)
        if "embeddings" in weight.path:
            values = rng.standard_normal(shape) * 0.5
        elif len(shape) == 2 and "relative_attention_bias" not in weight.path:
            values = rng.standard_normal(shape) * 3.0 / shape[1] ** 0.5  # [out, in] kernels
        elif weight.path.endswith("bias"):
            values = rng.standard_normal(shape) * 0.1
        else:
            continue
        weight.assign(values.astype(np.float32))
    head = model.float_head_matrix()
    eos, pad = common["eos_token_id"], common["pad_token_id"]
    input_ids, attention_mask = _source()
    generated = model.generate(input_ids, attention_mask=attention_mask, max_new_tokens=10,
                               eos_token_id=None).numpy()[:, 1:]
    tokens, counts = np.unique(generated, return_counts=True)
    saved = head.numpy()
    for token in [t for t in tokens[np.argsort(-counts, kind="stable")] if t not in (eos, pad)]:
        for scale in support.EOS_SCALES:
            rows = saved.copy()
            rows[eos] = saved[token] * scale
            head.assign(rows)
            trial = model.generate(input_ids, attention_mask=attention_mask, max_new_tokens=10)
            if _rows_end_at_different_steps(trial.numpy(), eos):
                return model
    raise AssertionError(f"no EOS row makes the {family} rows end at varied steps")


def _source(vocab=3000):
    rng = np.random.default_rng(4)
    input_ids = rng.integers(3, vocab, (5, 9)).astype(np.int32)
    attention_mask = np.ones_like(input_ids)
    attention_mask[1, 6:] = 0
    attention_mask[3, 4:] = 0
    return input_ids, attention_mask


GREEDY_OPTIONS = [
    # Bans only: the candidates' processed scores come from the processed bounds.
    dict(max_new_tokens=10, min_new_tokens=3, no_repeat_ngram_size=2),
    # A repetition penalty rescales scores: the candidates are processed as a grid.
    dict(max_new_tokens=10, no_repeat_ngram_size=2, repetition_penalty=1.4),
]


def _count_fallbacks(monkeypatch):
    """Makes the searches count the steps that take the float head (a variable the
    compiled fallback increments); returns `(counter, traced)`, `traced` listing the
    screened selections built (empty if the screen was never used)."""
    original = screening.screened_greedy_tokens
    counter = tf.Variable(0, dtype=tf.int32)
    traced = []

    def counting(screen, hidden, head, process_vr=None, fallback_fn=None, **options):
        traced.append(screen)

        def fallback():
            with tf.control_dependencies([counter.assign_add(1)]):
                return tf.identity(fallback_fn())

        return original(screen, hidden, head, process_vr, fallback, **options)

    monkeypatch.setattr("tfmodels.generation.graph.screened_greedy_tokens", counting)
    return counter, traced


# m2m100's case runs in the slow suite (the default suite's time budget); its screen is
# covered in the default suite by the wide-vocabulary and fallback tests.
@pytest.mark.parametrize("family", ["mt5", pytest.param("m2m100", marks=pytest.mark.slow)])
def test_screen_decides_every_step_and_gives_the_plain_tokens(family, monkeypatch):
    """Plain and screened generation agree (processors of both kinds, padded rows that end
    at different steps), and no step needed the float head."""
    model = _wide_vocab_model(family)
    input_ids, attention_mask = _source()
    plain = [model.generate(input_ids, attention_mask=attention_mask, **options).numpy()
             for options in GREEDY_OPTIONS]
    assert all(_rows_end_at_different_steps(p, model.config.eos_token_id) for p in plain)
    fallbacks, traced = _count_fallbacks(monkeypatch)
    model.enable_head_screening()
    for options, expected in zip(GREEDY_OPTIONS, plain):
        screened = model.generate(input_ids, attention_mask=attention_mask, **options).numpy()
        assert screened.tolist() == expected.tolist(), options
    assert len(traced) == len(GREEDY_OPTIONS)  # each search was a screened one
    assert int(fallbacks.numpy()) == 0


@pytest.mark.parametrize("family", ["m2m100"])  # the fallback is the same code for both
def test_a_screen_too_narrow_to_decide_falls_back_to_the_same_tokens(family, monkeypatch):
    """One candidate per row can rarely exclude the rest: those steps take the float head
    (XLA), and the plain graph ignores the screen; all give the unscreened tokens."""
    model = _wide_vocab_model(family)
    input_ids, attention_mask = _source()
    options = GREEDY_OPTIONS[0]
    expected = model.generate(input_ids, attention_mask=attention_mask, **options).numpy()
    fallbacks, traced = _count_fallbacks(monkeypatch)
    model.enable_head_screening(candidates=1)
    assert model.head_screen.candidates == 1
    got = model.generate(input_ids, attention_mask=attention_mask, **options).numpy()
    assert got.tolist() == expected.tolist()
    assert len(traced) == 1 and int(fallbacks.numpy()) > 0
    got = model.generate(input_ids, attention_mask=attention_mask, jit_compile=False,
                         **options).numpy()
    assert got.tolist() == expected.tolist()
    assert len(traced) == 1  # no screen without XLA


def test_screening_switches_and_refusals(tmp_path):
    model = _wide_vocab_model("mt5")
    input_ids, attention_mask = _source()
    expected = model.generate(input_ids, attention_mask=attention_mask, max_new_tokens=6).numpy()
    model.enable_head_screening()
    screen_weights = {id(w) for w in model.head_screen.weights}
    assert screen_weights <= {id(w) for w in model.weights}  # tracked: saved and exported

    # A .keras file keeps the screen (and its candidates).
    path = str(tmp_path / "screened.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    assert restored.head_screen is not None and restored.head_screen.candidates == 128
    got = restored.generate(input_ids, attention_mask=attention_mask, max_new_tokens=6).numpy()
    assert got.tolist() == expected.tolist()

    # Training refuses a snapshot it would outdate.
    model.compile(optimizer="adam")
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": input_ids[:, :4]}
    with pytest.raises(ValueError, match="disable_head_screening"):
        model.train_on_batch(batch)
    model.disable_head_screening()
    assert model.head_screen is None
    assert not any(id(w) in screen_weights for w in model.weights)

    # quantize_weights drops the screen; an int8 or "in_out" head cannot be screened.
    model.enable_head_screening()
    model.quantize_weights("int8")
    assert model.head_screen is None
    with pytest.raises(ValueError, match="not quantised"):
        model.enable_head_screening()
    from tfmodels import MT5Config, MT5ForConditionalGeneration

    config = MT5Config(vocab_size=100, d_model=16, d_kv=4, num_heads=2, d_ff=32, num_layers=1)
    with pytest.raises(ValueError, match="lm_head_layout='out_in'"):
        MT5ForConditionalGeneration(config, lm_head_layout="in_out").enable_head_screening()
    with pytest.raises(ValueError, match="computes in bfloat16"):
        MT5ForConditionalGeneration(config, dtype="mixed_bfloat16").enable_head_screening()


def _load_into(model, source, how, tmp_path):
    """Loads `source`'s float weights into `model` by `how`."""
    if how == "hf_state_dict":
        model.load_hf_state_dict(source.hf_state_dict())
    elif how == "load_weights":  # a file saved without a screen
        path = str(tmp_path / "source.weights.h5")
        source.save_weights(path)
        model.load_weights(path)
    else:  # set_weights: the list's screen values are this model's own, now stale
        def inner_path(variable):  # without the model's own name
            return variable.path.split("/", 1)[1]

        floats = {inner_path(v): v.numpy() for v in source.weights}
        model.set_weights([floats.get(inner_path(v), v.numpy()) for v in model.weights])


@pytest.mark.parametrize("how", ["hf_state_dict", "load_weights",
                                 pytest.param("set_weights", marks=pytest.mark.slow)])
def test_loading_new_weights_makes_the_screen_again(how, tmp_path):
    """New float weights in a screened model, by any of the loading paths: the screen is
    made from the new head, so the screened tokens are the new float model's."""
    model = _wide_vocab_model("mt5")
    source = _wide_vocab_model("mt5")
    rng = np.random.default_rng(4)
    for variable in source.trainable_weights:  # other weights than `model`'s
        variable.assign(variable.numpy() + rng.normal(0, 0.05, variable.shape).astype(np.float32))
    input_ids, attention_mask = _source()
    expected = source.generate(input_ids, attention_mask=attention_mask, max_new_tokens=6).numpy()
    model.enable_head_screening(candidates=64)
    stale = model.generate(input_ids, attention_mask=attention_mask, max_new_tokens=6).numpy()
    _load_into(model, source, how, tmp_path)
    assert model.head_screen.candidates == 64
    source.enable_head_screening(candidates=64)
    for ours, theirs in zip(model.head_screen.weights, source.head_screen.weights, strict=True):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy(), err_msg=ours.path)
    got = model.generate(input_ids, attention_mask=attention_mask, max_new_tokens=6).numpy()
    assert got.tolist() == expected.tolist()
    assert got.tolist() != stale.tolist()  # the two weight sets generate differently


def test_a_weights_file_must_still_hold_every_float_weight(tmp_path):
    """Only the copies made from float weights may be missing from a file: one that lacks
    a float weight (here the token embeddings) is refused, as Keras refuses it for any
    model. The screen still stands for the LM head the failed load did bring in."""
    model = _wide_vocab_model("mt5")
    model.enable_head_screening(candidates=4)  # a stale screen shows at once
    source = _wide_vocab_model("mt5")
    rng = np.random.default_rng(5)
    for variable in source.trainable_weights:
        variable.assign(variable.numpy() + rng.normal(0, 0.5, variable.shape).astype(np.float32))
    path = str(tmp_path / "partial.weights.h5")
    source.save_weights(path)
    with h5py.File(path, "a") as weights_file:
        del weights_file["layers/embedding/vars"]  # the token embeddings
    with pytest.raises(ValueError, match="(?s)could not be loaded.*shared"):
        model.load_weights(path)
    input_ids, attention_mask = _source()
    screened = model.generate(input_ids, attention_mask=attention_mask, max_new_tokens=6).numpy()
    assert model.head_screen.candidates == 4
    model.disable_head_screening()
    plain = model.generate(input_ids, attention_mask=attention_mask, max_new_tokens=6).numpy()
    assert screened.tolist() == plain.tolist()


# ------------------------------------------------------------------------------ serving
def test_export_settings_refuse_what_the_screen_cannot_serve():
    from savedmodel.export_settings import ExportSettings

    assert ExportSettings(xla=True, head_screening=True).head_screening
    with pytest.raises(ValueError, match="export with xla=True"):
        ExportSettings(head_screening=True)
    with pytest.raises(ValueError, match="weight_quantization='int8'"):
        ExportSettings(xla=True, head_screening=True, weight_quantization="int8")
    with pytest.raises(ValueError, match="dtype is 'bfloat16'"):
        ExportSettings(xla=True, head_screening=True, dtype="bfloat16")


@pytest.mark.slow
def test_screened_xla_export_serves_the_float_models_translations(tmp_path):
    """`tfmodels export --xla --screen-head`: the SavedModel stores the screen beside the
    float weights, and its greedy `serving_default_xla` translates as the unscreened
    model's `generate` does (and as the export's plain-graph default signature)."""
    from fixtures.savedmodel.checkpoints import make_tiny_m2m100_checkpoint
    from fixtures.savedmodel.weight_checks import (SOURCE_LANGUAGES, TARGET_LANGUAGES, TEXTS,
                                                   assert_serves_the_models_translations,
                                                   export_info, variable_elements_by_dtype)
    from savedmodel.checkpoint import load_checkpoint
    from tfmodels import cli

    checkpoint = make_tiny_m2m100_checkpoint(str(tmp_path / "checkpoint"), init_std=0.3)
    args = ["--num-beams", "1", "--max-new-tokens", "5", "--no-warmup", "--xla"]
    assert cli.main(["export", checkpoint, str(tmp_path / "screened"), "--screen-head", *args]) == 0
    saved_model_dir = str(tmp_path / "screened" / "1")
    assert export_info(saved_model_dir)["settings"]["head_screening"] is True
    model, tokenizer = load_checkpoint(checkpoint)
    vocab, width = model.config.vocab_size, model.config.d_model
    assert variable_elements_by_dtype(saved_model_dir)["int8"] >= vocab * width

    assert_serves_the_models_translations(saved_model_dir, model, tokenizer)
    served = tf.saved_model.load(saved_model_dir).signatures["serving_default_xla"]
    compiled = served(text=tf.constant(TEXTS), src_lang=tf.constant(SOURCE_LANGUAGES),
                      tgt_lang=tf.constant(TARGET_LANGUAGES))
    default = tf.saved_model.load(saved_model_dir).signatures["serving_default"](
        text=tf.constant(TEXTS), src_lang=tf.constant(SOURCE_LANGUAGES),
        tgt_lang=tf.constant(TARGET_LANGUAGES))
    assert compiled["text"].numpy().tolist() == default["text"].numpy().tolist()
    # The XLA signature is the screened search (the barrier is only the screen's).
    from savedmodel import op_check

    assert "XlaOptimizationBarrier" in op_check.graph_ops(saved_model_dir)


# ------------------------------------------------------------------------------ real sizes
@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_real_size_heads_screen_every_step_to_the_plain_tokens(family, monkeypatch):
    """mt5-small's `[250112, 512]` and m2m100_418M's `[128112, 1024]` heads (random
    weights, the flattest logits): 8 rows x 32 greedy tokens, as without the screen, with
    at most 2 of the 32 steps left to the float head (seen: mt5 0, m2m100 1)."""
    from helpers import M2M100_418M_CONFIG_JSON, MT5_SMALL_CONFIG_JSON
    from tfmodels import M2M100Config, M2M100ForConditionalGeneration, MT5Config, MT5ForConditionalGeneration

    keras.utils.set_random_seed(3)
    if family == "mt5":
        model = MT5ForConditionalGeneration(MT5Config.from_dict(dict(MT5_SMALL_CONFIG_JSON)))
    else:
        model = M2M100ForConditionalGeneration(M2M100Config.from_dict(dict(M2M100_418M_CONFIG_JSON)))
    vocab = model.config.vocab_size
    input_ids = np.random.default_rng(5).integers(4, vocab, (8, 32)).astype(np.int32)
    options = dict(max_new_tokens=32, min_new_tokens=32, num_beams=1)  # m2m100: 5 by default
    expected = model.generate(input_ids, **options).numpy()
    fallbacks, traced = _count_fallbacks(monkeypatch)
    model.enable_head_screening()
    assert model.generate(input_ids, **options).numpy().tolist() == expected.tolist()
    assert traced and int(fallbacks.numpy()) <= 2
