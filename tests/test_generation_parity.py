"""Live parity of `generate` with transformers 4.57 PyTorch `generate` (torch tests).

Both families, a right-padded batch of mixed source lengths whose rows end at different
steps, token-for-token identical ids and beam `sequences_scores` within 1e-4:
greedy, `min_new_tokens`, `no_repeat_ngram_size`, `repetition_penalty` (> 1 and < 1),
beam search (length penalties 0.6 / 1.5 / 2.0, early_stopping True / False / "never",
`num_return_sequences`), beam search with all processors, forced BOS (scalar and per
example) for M2M100, `suppress_tokens`, a decoder prompt (with inner padding for M2M100),
and the reference's default length.
Cases are grouped so that each group shares one compiled function.
"""

import numpy as np
import pytest

import test_generation_support as support

pytestmark = pytest.mark.torch

_MODELS = {}  # family -> (reference, ours), built once per test session


@pytest.fixture
def pair(transformers):
    """`get(family) -> (reference, ours)`; the models are built once and reused, so each
    group of cases compiles its search function only once."""

    def get(family):
        if family not in _MODELS:
            reference = support.build_reference(transformers, family)
            _MODELS[family] = (reference, support.ours_from_reference(reference, family))
        return _MODELS[family]

    return get


def _check(pair, family, name, options, **run_options):
    reference, ours = pair(family)
    input_ids, attention_mask = support.source_batch(family)
    expected = support.reference_case(reference, family, input_ids, attention_mask, options)
    sequences, scores = support.our_generate(
        ours, input_ids, attention_mask, **support.our_options(options, len(input_ids)), **run_options
    )
    support.assert_generation_matches(
        sequences, scores, expected, support.fill_token(family, options), f"{family}/{name}"
    )
    return expected


@pytest.mark.parametrize("family", sorted(support.FAMILIES))
def test_greedy_and_beam_cases(pair, family):
    """The golden-fixture cases, live (greedy and beam groups: two compiled functions)."""
    for name, options in support.golden_cases(family):
        _check(pair, family, name, options)


@pytest.mark.parametrize("family", sorted(support.FAMILIES))
def test_no_repeat_ngram(pair, family):
    expected = _check(pair, family, "no_repeat_ngram_2", dict(max_new_tokens=12, no_repeat_ngram_size=2))
    # The option is not vacuous: without it some row repeats a bigram.
    plain = support.reference_case(pair(family)[0], family, *support.source_batch(family),
                                   dict(max_new_tokens=12))
    assert plain != expected


@pytest.mark.parametrize("family", sorted(support.FAMILIES))
def test_repetition_penalty(pair, family):
    for penalty in (1.8, 0.7):
        _check(pair, family, f"repetition_penalty_{penalty}",
               dict(max_new_tokens=12, repetition_penalty=penalty))


@pytest.mark.parametrize("family", sorted(support.FAMILIES))
def test_beam_with_every_processor(pair, family):
    options = dict(max_new_tokens=12, num_beams=3, no_repeat_ngram_size=3, repetition_penalty=1.3,
                   min_new_tokens=4, length_penalty=0.9, num_return_sequences=2)
    _check(pair, family, "beam3_all_processors", options)
    if family == "m2m100":
        _check(pair, family, "beam3_all_processors_forced_bos",
               dict(options, forced_bos_token_id="per_row"))


@pytest.mark.parametrize("family", sorted(support.FAMILIES))
def test_suppress_tokens(pair, family):
    """`suppress_tokens` (greedy and beam): the tokens unsuppressed greedy uses most are
    never generated, and everything else follows the reference."""
    reference, _ = pair(family)
    plain = support.reference_case(reference, family, *support.source_batch(family),
                                   dict(max_new_tokens=12))
    eos, pad = support.FAMILIES[family][2], support.FAMILIES[family][3]
    generated = np.array([t for row in plain for ids, _ in row for t in ids[1:]
                          if t not in (eos, pad)])
    counts = np.bincount(generated, minlength=64)
    suppressed = [int(token) for token in np.argsort(-counts)[:4] if counts[token] > 0]
    assert suppressed  # not vacuous: greedy did use these tokens
    for name, options in (("greedy", dict(max_new_tokens=12)),
                          ("beam3", dict(max_new_tokens=12, num_beams=3))):
        expected = _check(pair, family, f"suppress_{name}", dict(options, suppress_tokens=suppressed))
        tokens = [t for row in expected for ids, _ in row for t in ids[1:]]
        assert not set(tokens) & set(suppressed)


def test_decoder_prompt_and_default_length(pair):
    """A decoder prompt (the start token is prepended as the reference does), greedy and
    with beams, and the reference's default length (20 new tokens when nothing is set)."""
    prompt = np.tile(np.array([[5, 9]], np.int64), (len(support.SOURCE_LENGTHS), 1))
    _check(pair, "mt5", "decoder_prompt", dict(max_new_tokens=10, decoder_input_ids=prompt))
    # Beams prefill the prompt against one cross-attention cache per input.
    _check(pair, "mt5", "decoder_prompt_beam3",
           dict(max_new_tokens=10, num_beams=3, decoder_input_ids=prompt))
    _check(pair, "m2m100", "default_length", dict())


def test_m2m100_prompt_with_inner_padding(pair):
    """M2M100 positions count only non-pad tokens: a decoder prompt with padding before
    its last token (left-padded rows, a pad in the middle, trailing pads, none) continues as the
    reference's does, greedy and with beams, compiled and in the plain graph."""
    pad = support.FAMILIES["m2m100"][3]
    rows = [[pad, pad, 5], [7, pad, 5], [7, 9, 5], [pad, 9, 5], [7, pad, pad]]
    prompt = np.array([rows[i % len(rows)] for i in range(len(support.SOURCE_LENGTHS))], np.int64)
    _check(pair, "m2m100", "inner_padding", dict(max_new_tokens=10, decoder_input_ids=prompt))
    _check(pair, "m2m100", "inner_padding_graph",
           dict(max_new_tokens=10, decoder_input_ids=prompt), jit_compile=False)
    _check(pair, "m2m100", "inner_padding_beam3",
           dict(max_new_tokens=10, num_beams=3, decoder_input_ids=prompt))


def test_graph_path_matches_reference(pair):
    """The plain-graph path (what TF Serving runs) against the reference directly."""
    _check(pair, "m2m100", "graph_beam", dict(max_new_tokens=12, num_beams=4, length_penalty=0.6,
                                               early_stopping=True), jit_compile=False)


def test_output_vocabulary_restriction_matches_suppressed_reference(pair):
    """Greedy decoding restricted to a token subset = the reference with every other token
    suppressed (`suppress_tokens`)."""
    reference, ours = pair("m2m100")
    input_ids, attention_mask = support.source_batch("m2m100")
    allowed = list(range(4, 64, 3))
    others = [t for t in range(64) if t not in allowed and t not in (1, 2)]
    expected = support.reference_case(reference, "m2m100", input_ids, attention_mask,
                                      dict(max_new_tokens=12, suppress_tokens=others))
    sequences, _ = support.our_generate(ours, input_ids, attention_mask, max_new_tokens=12,
                                        output_token_ids=allowed)
    support.assert_generation_matches(sequences, None, expected, 1, "restricted vocabulary")
