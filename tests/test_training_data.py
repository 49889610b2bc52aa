"""In-graph data pipeline: raw (source, target) strings -> bucketed model inputs."""

from collections import Counter

import numpy as np
import pytest
import tensorflow as tf

from test_training_support import M2M100_TOKENIZER_DIR, MT5_TOKENIZER_DIR, TESTS_DIR
from tfmodels.tokenizers import M2M100Tokenizer, T5Tokenizer
from tfmodels.training import (default_bucket_boundaries, padding_fraction, seq2seq_dataset,
                               seq2seq_eval_dataset)


@pytest.fixture(scope="module")
def corpus():
    with open(f"{TESTS_DIR}/data/corpus.txt", encoding="utf-8") as handle:
        lines = [line.strip() for line in handle if line.strip()]
    rng = np.random.RandomState(0)
    # Varied, correlated lengths (as translation pairs): k = 1..4 lines on both sides.
    sources, targets = [], []
    for start in range(0, 600, 5):
        k = 1 + rng.randint(4)
        sources.append(" ".join(lines[start:start + k]))
        targets.append(" ".join(lines[start + 700:start + 700 + k]))
    return sources, targets


@pytest.fixture(scope="module")
def t5_tokenizer():
    return T5Tokenizer.from_pretrained(MT5_TOKENIZER_DIR)


@pytest.fixture(scope="module")
def m2m100_tokenizer():
    return M2M100Tokenizer.from_pretrained(M2M100_TOKENIZER_DIR)


def rows(batch, key, fill):
    """Unpadded rows of a batch field (values before the first `fill` run at the end)."""
    out = []
    for row in batch[key].numpy():
        keep = len(row)
        while keep and row[keep - 1] == fill:
            keep -= 1
        out.append(row[:keep].tolist())
    return out


def test_examples_are_the_tokenizers_ids_with_minus_100_label_padding(corpus, t5_tokenizer):
    sources, targets = corpus
    prefix = "translate: "
    dataset = seq2seq_dataset((sources, targets), t5_tokenizer, batch_size=8,
                              task_prefix=prefix, max_source_length=48, max_target_length=32)
    src = t5_tokenizer([prefix + s for s in sources], truncation=True, max_length=48,
                       padding=False)["input_ids"]
    tgt = t5_tokenizer(text_target=targets, truncation=True, max_length=32,
                       padding=False)["input_ids"]
    expected = Counter((tuple(a), tuple(b)) for a, b in zip(src.to_list(), tgt.to_list()))
    seen = Counter()
    for batch in dataset:
        assert {k: v.dtype for k, v in batch.items()} == {
            "input_ids": tf.int32, "attention_mask": tf.int32, "labels": tf.int32}
        mask = batch["attention_mask"].numpy()
        ids = batch["input_ids"].numpy()
        assert np.all(ids[mask == 0] == t5_tokenizer.pad_token_id)
        for source_ids, label_ids, row_mask in zip(rows(batch, "input_ids", 0),
                                                   rows(batch, "labels", -100), mask):
            assert len(source_ids) == row_mask.sum()
            seen[(tuple(source_ids), tuple(label_ids))] += 1
        labels = batch["labels"].numpy()
        assert np.all((labels == -100) | (labels >= 0))
    assert seen == expected  # every pair once, source and target still together


def test_bucketing_cuts_padding(corpus, t5_tokenizer, report_figure):
    sources, targets = corpus
    common = dict(batch_size=16, max_source_length=64, max_target_length=64)
    bucketed = seq2seq_dataset((sources, targets), t5_tokenizer, **common)
    one_bucket = seq2seq_dataset((sources, targets), t5_tokenizer, bucket_boundaries=[65],
                                 shuffle_buffer=len(sources), seed=0, **common)
    with_buckets, without = padding_fraction(bucketed), padding_fraction(one_bucket)
    assert with_buckets < 0.5 * without
    report_figure("padding share, bucketed vs one bucket", bucketed=with_buckets,
                  unbucketed=without)


def test_token_budget_and_bucket_bounds(corpus, t5_tokenizer):
    sources, targets = corpus
    boundaries = default_bucket_boundaries(64)
    assert boundaries[0] == 8 and boundaries[-1] == 65 and boundaries == sorted(boundaries)
    dataset = seq2seq_dataset((sources, targets), t5_tokenizer, max_tokens=256, batch_multiple=2,
                              max_source_length=64, max_target_length=64,
                              pad_to_bucket_boundary=True)
    for batch in dataset:
        width = max(batch["input_ids"].shape[1], batch["labels"].shape[1])
        assert batch["input_ids"].shape[0] * min(b for b in boundaries if b > width) <= 256 * 2
        assert batch["input_ids"].shape[1] + 1 in boundaries  # padded to the bucket bound


def test_m2m100_per_example_language_pairs(m2m100_tokenizer):
    data = tf.data.Dataset.from_tensor_slices({
        "source": ["Hello world", "Bonjour", "Guten Tag", "Buongiorno a tutti"],
        "target": ["Hallo Welt", "Hello", "Bonjour", "Good morning everyone"],
        "src_lang": ["en", "fr", "de", "it"],
        "tgt_lang": ["de", "en", "fr", "en"],
    })
    by_source = {}
    for batch in seq2seq_dataset(data, m2m100_tokenizer, batch_size=4, max_source_length=16,
                                 max_target_length=16):
        for source_ids, label_ids in zip(rows(batch, "input_ids", m2m100_tokenizer.pad_token_id),
                                         rows(batch, "labels", -100)):
            by_source[source_ids[0]] = label_ids[0]
            assert source_ids[-1] == label_ids[-1] == m2m100_tokenizer.eos_token_id
    lang = m2m100_tokenizer.get_lang_id
    assert by_source == {lang("en"): lang("de"), lang("fr"): lang("en"),
                         lang("de"): lang("fr"), lang("it"): lang("en")}

    evaluation = next(iter(seq2seq_eval_dataset(data, m2m100_tokenizer, batch_size=4)))
    assert evaluation["forced_bos_token_id"].numpy().tolist() == [
        lang("de"), lang("en"), lang("fr"), lang("en")]
    assert evaluation["references"].numpy()[0].decode() == "Hallo Welt"


def test_m2m100_eval_dataset_takes_the_tokenizers_target_language():
    """Without a `tgt_lang` in the call or the examples, evaluation forces the tokenizer's
    target language, the one `seq2seq_dataset` frames the training labels with."""
    tokenizer = M2M100Tokenizer.from_pretrained(M2M100_TOKENIZER_DIR, src_lang="en",
                                                tgt_lang="de")
    pairs = (["Hello world", "Good morning"], ["Hallo Welt", "Guten Morgen"])
    evaluation = next(iter(seq2seq_eval_dataset(pairs, tokenizer, batch_size=2)))
    assert evaluation["forced_bos_token_id"].numpy().tolist() == [tokenizer.get_lang_id("de")] * 2
    training = next(iter(seq2seq_dataset(pairs, tokenizer, batch_size=2)))
    assert training["labels"].numpy()[:, 0].tolist() == [tokenizer.get_lang_id("de")] * 2
    overridden = next(iter(seq2seq_eval_dataset(pairs, tokenizer, batch_size=2, tgt_lang="fr")))
    assert overridden["forced_bos_token_id"].numpy().tolist() == [tokenizer.get_lang_id("fr")] * 2


def test_repeated_stream_is_deterministic(corpus, t5_tokenizer):
    sources, targets = corpus

    def first_batches():
        dataset = seq2seq_dataset((sources, targets), t5_tokenizer, batch_size=8, repeat=True,
                                  shuffle_buffer=32, seed=3, max_source_length=32,
                                  max_target_length=32)
        return [b["input_ids"].numpy() for b in dataset.take(8)]

    for a, b in zip(first_batches(), first_batches()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("pairs, counts", [(([], []), "0 sources and 0 targets"),
                                           ((["a", "b"], ["x"]), "2 sources and 1 targets")])
def test_empty_or_unequal_text_lists_are_named(t5_tokenizer, pairs, counts):
    with pytest.raises(ValueError, match=counts):
        seq2seq_dataset(pairs, t5_tokenizer, batch_size=2)
    with pytest.raises(ValueError, match=counts):
        seq2seq_eval_dataset(pairs, t5_tokenizer, batch_size=2)


@pytest.mark.parametrize("lengths", [dict(max_source_length=None), dict(bucket_boundaries=[8, 16])])
def test_bucket_padding_refuses_lengths_past_the_last_boundary(t5_tokenizer, lengths):
    """An example longer than the last boundary would stop a bucket-padded stream mid-epoch
    with tf.data's own error; the dataset is refused when it is made instead."""
    with pytest.raises(ValueError, match="pad_to_bucket_boundary=True needs every example"):
        seq2seq_dataset((["a"], ["b"]), t5_tokenizer, batch_size=2, pad_to_bucket_boundary=True,
                        **lengths)


def test_token_budget_holds_past_the_last_bucket_boundary(corpus, t5_tokenizer):
    """Rows longer than the last boundary (up to the maximum lengths) still get batches
    within `max_tokens` (they were sized for twice the last boundary)."""
    sources, targets = corpus
    long_sources = [" ".join(sources[i:i + 6]) for i in range(0, 120, 6)]
    long_targets = [" ".join(targets[i:i + 6]) for i in range(0, 120, 6)]
    dataset = seq2seq_dataset((long_sources, long_targets), t5_tokenizer, max_tokens=256,
                              bucket_boundaries=[8, 16, 32], max_source_length=128,
                              max_target_length=128)
    widths = []
    for batch in dataset:
        width = max(batch["input_ids"].shape[1], batch["labels"].shape[1])
        widths.append(width)
        assert batch["input_ids"].shape[0] * width <= 256
    assert max(widths) > 64  # the overflow bucket was exercised
    with pytest.raises(ValueError, match="max_tokens needs max_source_length and max_target_length"):
        seq2seq_dataset((sources, targets), t5_tokenizer, max_tokens=256, max_target_length=None)


def test_unbounded_lengths_truncate_at_the_tokenizers_maximum(m2m100_tokenizer):
    """`max_source_length=None` truncates at `model_max_length`, as the reference's
    `tokenizer(..., truncation=True, max_length=None)` and `seq2seq_eval_dataset` do."""
    limit = int(m2m100_tokenizer.model_max_length)
    text = " ".join(["hello"] * (limit + 50))
    batch = next(iter(seq2seq_dataset(([text], [text]), m2m100_tokenizer, batch_size=1,
                                      max_source_length=None, max_target_length=None,
                                      bucket_boundaries=[8], src_lang="en", tgt_lang="de")))
    assert batch["input_ids"].shape[1] == limit and batch["labels"].shape[1] == limit


@pytest.mark.parametrize("data, message", [
    ([("Hello", "Hallo"), ("World", "Welt")], r"tuple\(zip\(\*pairs\)\)"),
    (("Hi", "Yo"), "two sequences of strings"),
    ([("a", "b"), ("c", "d"), ("e", "f")], "two sequences of strings"),
])
def test_pairs_in_the_wrong_shape_are_refused(t5_tokenizer, data, message):
    with pytest.raises(ValueError, match=message):
        seq2seq_dataset(data, t5_tokenizer, batch_size=2)


def test_arguments_and_columns_are_checked(t5_tokenizer, m2m100_tokenizer):
    pairs = (["a", "b"], ["x", "y"])
    for kwargs, message in ((dict(batch_size=0), "batch_size must be a positive integer, got 0"),
                            (dict(batch_size=2.5), "batch_size must be a positive integer"),
                            (dict(max_tokens=0), "max_tokens must be a positive integer"),
                            (dict(batch_size=2, max_source_length=0), "max_source_length"),
                            (dict(batch_size=2, bucket_boundaries=[16, 16]), "increasing positive"),
                            (dict(batch_size=2, repeat=True, shuffle_buffer=8), "needs a seed")):
        with pytest.raises(ValueError, match=message):
            seq2seq_dataset(pairs, t5_tokenizer, **kwargs)
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got None"):
        seq2seq_eval_dataset(pairs, t5_tokenizer, batch_size=None)
    columns = tf.data.Dataset.from_tensor_slices({"source": ["Hello"], "target": ["Hallo"],
                                                  "source_lang": ["en"], "id": [7]})
    with pytest.warns(UserWarning, match=r"text columns \['source_lang'\] are not read"):
        seq2seq_dataset(columns, m2m100_tokenizer, batch_size=1, src_lang="en", tgt_lang="de")
