"""chrF / BLEU scoring and the generation-based evaluation callback."""

import random

import keras
import numpy as np
import pytest
import tensorflow as tf

from test_training_support import (M2M100_TOKENIZER_DIR, MT5_TOKENIZER_DIR, favour_token,
                                   small_model)
from tfmodels.tokenizers import M2M100Tokenizer, T5Tokenizer
from tfmodels.training import (GenerationEvalCallback, corpus_bleu, corpus_chrf,
                               seq2seq_dataset, seq2seq_eval_dataset)

HYPOTHESES = ["The cat sat on the mat.", "Il fait beau aujourd'hui, n'est-ce pas ?",
              "1,000 people came at 3.5 pm", "", "Das ist ein Test-Satz."]
REFERENCES = ["The cat is sitting on the mat.", "Il fait très beau aujourd'hui !",
              "1,000 people arrived at 3.5 pm.", "nothing", "Das ist ein Testsatz."]
# sacrebleu 2.6.0: corpus_chrf(H, [R]).score, corpus_bleu(H, [R]).score
SACREBLEU_CHRF, SACREBLEU_BLEU = 58.78980255389644, 26.555152086246395


def test_builtin_scores_equal_sacrebleu_values():
    assert corpus_chrf(HYPOTHESES, REFERENCES, backend="builtin") == pytest.approx(
        SACREBLEU_CHRF, abs=1e-9)
    assert corpus_bleu(HYPOTHESES, REFERENCES, backend="builtin") == pytest.approx(
        SACREBLEU_BLEU, abs=1e-9)
    assert corpus_chrf(["same text"], ["same text"], backend="builtin") == 100.0
    assert corpus_bleu(["a b"], ["c d"], backend="builtin") == 0.0
    with pytest.raises(ValueError, match="hypotheses"):
        corpus_chrf(["a"], ["a", "b"])


def test_builtin_scores_equal_sacrebleu_on_random_corpora():
    sacrebleu = pytest.importorskip("sacrebleu")
    rng = random.Random(0)
    words = ["the", "cat", "sat", ",", ".", "3.5", "1,000", "don't", "(x)", "-", "über", "日本"]
    for _ in range(50):
        size = rng.randint(1, 5)
        hyps = [" ".join(rng.choice(words) for _ in range(rng.randint(0, 9))) for _ in range(size)]
        refs = [" ".join(rng.choice(words) for _ in range(rng.randint(0, 9))) for _ in range(size)]
        assert corpus_chrf(hyps, refs, backend="builtin") == pytest.approx(
            sacrebleu.corpus_chrf(hyps, [refs]).score, abs=1e-9)
        assert corpus_bleu(hyps, refs, backend="builtin") == pytest.approx(
            sacrebleu.corpus_bleu(hyps, [refs]).score, abs=1e-9)


PAIRS = (["Hello world", "Good morning", "How are you today?", "Thank you very much"],
         ["Hallo Welt", "Guten Morgen", "Wie geht es dir heute?", "Vielen Dank"])


def test_eval_callback_in_fit_logs_scores_for_early_stopping():
    tokenizer = T5Tokenizer.from_pretrained(MT5_TOKENIZER_DIR)
    # As many embedding rows as the tokenizer has ids, so every generated id decodes (the
    # padded-vocabulary case is the next test).
    model = small_model("mt5", vocab_size=len(tokenizer.decodable_token_ids()))
    model.compile(run_eagerly=False)
    train = seq2seq_dataset(PAIRS, tokenizer, batch_size=4, max_source_length=16,
                            max_target_length=16)
    evaluation = seq2seq_eval_dataset(PAIRS, tokenizer, batch_size=2)
    # jit_compile=False: XLA compilation costs seconds per shape on 2 shared CPU cores.
    callback = GenerationEvalCallback(evaluation, tokenizer, max_new_tokens=6, backend="builtin",
                                      generate_kwargs={"jit_compile": False})
    stopper = keras.callbacks.EarlyStopping(monitor="val_chrf", mode="max", patience=0)
    history = model.fit(train, epochs=1, callbacks=[callback, stopper], verbose=0)
    assert {"val_chrf", "val_bleu"} <= set(history.history)
    assert all(0.0 <= v <= 100.0 for v in history.history["val_chrf"])
    assert stopper.best == history.history["val_chrf"][-1]  # the monitor saw the score
    assert callback.last_references == PAIRS[1]
    # The hypotheses are what generate + detokenize give for the same inputs.
    batch = next(iter(evaluation))
    ids = model.generate(batch["input_ids"], attention_mask=batch["attention_mask"],
                         max_new_tokens=6, jit_compile=False)
    decoded = tokenizer.detokenize(tf.convert_to_tensor(ids), skip_special_tokens=True)
    assert [s.decode() for s in decoded.numpy()] == callback.last_hypotheses[:2]
    assert callback.generate_and_score()["chrf"] == pytest.approx(
        corpus_chrf(callback.last_hypotheses, PAIRS[1], backend="builtin"))


def test_eval_callback_survives_ids_the_tokenizer_cannot_decode():
    """mT5-style padded vocabulary: the model has more rows than the tokenizer has ids and
    (untrained) emits one of the extra ids; the callback generates with the extra ids
    suppressed instead of stopping the fit with a detokenize error."""
    tokenizer = T5Tokenizer.from_pretrained(MT5_TOKENIZER_DIR)
    decodable = tokenizer.decodable_token_ids()
    extra_id = int(decodable[-1]) + 5
    model = small_model("mt5", vocab_size=int(decodable[-1]) + 13)
    favour_token(model, extra_id)  # the extra id wins every step
    evaluation = seq2seq_eval_dataset(PAIRS, tokenizer, batch_size=2)
    batch = next(iter(evaluation))
    raw = np.asarray(model.generate(batch["input_ids"], attention_mask=batch["attention_mask"],
                                    max_new_tokens=4, jit_compile=False))
    assert extra_id in raw  # the situation is real ...
    with pytest.raises(tf.errors.InvalidArgumentError, match="out of range"):
        tokenizer.detokenize(tf.convert_to_tensor(raw), skip_special_tokens=True)
    # The model's own generation config suppresses a token it would write otherwise; that
    # stays suppressed next to the extra ids.
    own = int(np.asarray(model.generate(
        batch["input_ids"], attention_mask=batch["attention_mask"], max_new_tokens=4,
        jit_compile=False, output_token_ids=decodable))[0, 1])
    assert own not in (0, 1)
    model.generation_config.suppress_tokens = [own]
    callback = GenerationEvalCallback(evaluation, tokenizer, max_new_tokens=4, backend="builtin",
                                      generate_kwargs={"jit_compile": False})
    callback.set_model(model)
    scores = callback.generate_and_score()  # ... and the callback gets through it
    assert 0.0 <= scores["chrf"] <= 100.0
    restricted = np.asarray(model.generate(
        batch["input_ids"], attention_mask=batch["attention_mask"], max_new_tokens=4,
        jit_compile=False, output_token_ids=[t for t in decodable if t != own]))
    assert np.isin(restricted, decodable).all() and own not in restricted
    expected = tokenizer.detokenize(tf.convert_to_tensor(restricted), skip_special_tokens=True)
    assert [s.decode() for s in expected.numpy()] == callback.last_hypotheses[:2]


def test_eval_callback_forces_each_examples_target_language():
    tokenizer = M2M100Tokenizer.from_pretrained(M2M100_TOKENIZER_DIR)
    model = small_model("m2m100", vocab_size=1700)
    data = tf.data.Dataset.from_tensor_slices({
        "source": ["Hello world", "Bonjour", "Guten Tag"],
        "target": ["Hallo Welt", "Hello", "Bonjour"],
        "src_lang": ["en", "fr", "de"], "tgt_lang": ["de", "en", "fr"]})
    evaluation = seq2seq_eval_dataset(data, tokenizer, batch_size=3)
    calls = []
    generate = model.generate

    def recording_generate(*args, **kwargs):
        sequences = generate(*args, **kwargs)
        calls.append((np.asarray(kwargs["forced_bos_token_id"]), np.asarray(sequences)))
        return sequences

    model.generate = recording_generate
    callback = GenerationEvalCallback(evaluation, tokenizer, max_new_tokens=4,
                                      generate_kwargs={"jit_compile": False})
    callback.set_model(model)
    scores = callback.generate_and_score()
    assert set(scores) == {"chrf", "bleu"}
    (forced, sequences), = calls
    expected = [tokenizer.get_lang_id(code) for code in ("de", "en", "fr")]
    assert forced.tolist() == expected
    assert sequences[:, 1].tolist() == expected  # [decoder start, forced language, ...]


def test_eval_callback_forces_the_language_of_m2m100_labels():
    """A `seq2seq_dataset` (labels, no `forced_bos_token_id`) as the validation set: each
    row generates in its label's language, the labels' first token."""
    tokenizer = M2M100Tokenizer.from_pretrained(M2M100_TOKENIZER_DIR)
    model = small_model("m2m100", vocab_size=1700)
    data = tf.data.Dataset.from_tensor_slices({
        "source": ["Hello world", "Bonjour"], "target": ["Hallo Welt", "Hello"],
        "src_lang": ["en", "fr"], "tgt_lang": ["de", "en"]})
    validation = seq2seq_dataset(data, tokenizer, batch_size=2, max_source_length=16,
                                 max_target_length=16)
    calls = []
    generate = model.generate

    def recording_generate(input_ids, **kwargs):
        calls.append((np.asarray(input_ids), kwargs.get("forced_bos_token_id")))
        return generate(input_ids, **kwargs)

    model.generate = recording_generate
    callback = GenerationEvalCallback(validation, tokenizer, max_new_tokens=4,
                                      generate_kwargs={"jit_compile": False})
    callback.set_model(model)
    callback.generate_and_score()
    lang = tokenizer.get_lang_id
    forced_by_source_language = {
        int(source[0]): int(forced)
        for input_ids, forced_ids in calls
        for source, forced in zip(input_ids, np.asarray(forced_ids))}
    assert forced_by_source_language == {lang("en"): lang("de"), lang("fr"): lang("en")}
