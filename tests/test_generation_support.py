"""Shared builders for the generation tests, plus the checks that the test models are fit
for purpose (their rows end at different steps).

Random checkpoints almost never emit EOS, and tied-embedding ones mostly repeat a token.
The test models are therefore made "interesting" deterministically:

* weights are re-drawn (torch generator, fixed seed): linear layers with std
  `gain / sqrt(fan_in)`, biases with std 0.1, the shared embedding with `embedding_std`,
  all rounded to bfloat16-representable values (so a bfloat16 checkpoint is exact);
* the EOS row of the output matrix becomes a scale (`EOS_SCALES`) times the row of a token the model
  often produces (chosen by a fixed rule), so EOS wins exactly where that token would have
  — at different steps in different rows.

The same construction builds the live PyTorch reference (torch tests) and the committed
golden fixture (`tests/fixtures/generation/make_generation_fixture.py`).
"""

import json
import os

import numpy as np
import pytest

GENERATION_FIXTURE_DIR = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "fixtures", "generation"
)
EOS_SCALES = (1.03, 1.1, 1.01)

# Generation test configs, small enough that both fixture checkpoints (bf16) stay under
# 100 KB. The reference's MT5 cache cannot serve num_decoder_layers != num_layers, so both
# stacks have 2 layers; heads and head sizes still differ from d_model / heads.
GEN_MT5 = dict(
    vocab_size=64, d_model=24, d_kv=8, d_ff=32, num_layers=2, num_decoder_layers=2,
    num_heads=3, relative_attention_num_buckets=8, relative_attention_max_distance=20,
    feed_forward_proj="gated-gelu", tie_word_embeddings=False, dropout_rate=0.0,
)
GEN_M2M100 = dict(
    vocab_size=64, d_model=24, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
    decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=48,
    max_position_embeddings=64, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
    encoder_layerdrop=0.0, decoder_layerdrop=0.0,
)

FAMILIES = {
    # family: (reference class, our class name, config values, eos, pad, embedding std, gain)
    "mt5": ("MT5ForConditionalGeneration", GEN_MT5, 1, 0, 1.0, 2.0),
    "m2m100": ("M2M100ForConditionalGeneration", GEN_M2M100, 2, 1, 0.5, 3.0),
}

# A right-padded batch of mixed source lengths (ids avoid the special tokens 0..3).
SOURCE_LENGTHS = (9, 5, 2, 7, 3, 8, 4, 6)


def source_batch(family, lengths=SOURCE_LENGTHS, seed=1):
    """`(input_ids, attention_mask)` int64 numpy arrays, right padding with the pad id."""
    _, config, eos, pad, _, _ = FAMILIES[family]
    rng = np.random.RandomState(seed)
    width = max(lengths)
    input_ids = np.full([len(lengths), width], pad, np.int64)
    attention_mask = np.zeros([len(lengths), width], np.int64)
    for row, length in enumerate(lengths):
        tokens = rng.randint(4, config["vocab_size"], size=length)
        tokens[-1] = eos
        input_ids[row, :length] = tokens
        attention_mask[row, :length] = 1
    return input_ids, attention_mask


def finish_lengths(sequences, eos, prompt_length=1):
    """Generated length up to and including the first EOS per row (-1: never ended)."""
    lengths = []
    for row in np.asarray(sequences)[:, prompt_length:]:
        hits = np.flatnonzero(row == eos)
        lengths.append(int(hits[0]) + 1 if hits.size else -1)
    return lengths


def ends_at_varied_steps(lengths):
    """At least two different end steps among the rows that ended, and a row that ran
    to the length limit (-1)."""
    ended = [length for length in lengths if length > 0]
    return len(set(ended)) >= 2 and -1 in lengths


def _bf16_exact(tensor):
    import torch

    return tensor.to(torch.bfloat16).to(torch.float32)


def _output_matrix(reference, family):
    if family == "mt5":
        return reference.lm_head.weight
    return reference.model.shared.weight


def build_reference(transformers, family, seed=0):
    """The PyTorch reference test model of `family` (deterministic)."""
    import torch

    class_name, config_values, eos, pad, embedding_std, gain = FAMILIES[family]
    config_class = transformers.MT5Config if family == "mt5" else transformers.M2M100Config
    torch.manual_seed(seed)
    reference = getattr(transformers, class_name)(config_class(**config_values)).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in reference.named_parameters():
            if "shared" in name or "embed_tokens" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * embedding_std)
            elif parameter.dim() == 2 and "relative_attention_bias" not in name:
                std = gain / parameter.shape[1] ** 0.5
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)
            elif name.endswith("bias"):
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
        if family == "m2m100":
            reference.model.shared.weight[pad] = 0.0  # the padding row stays zero
        reference.tie_weights()
        # bfloat16-exact values (kept in float32): the fixture checkpoint stores them in
        # bfloat16 without changing a single weight.
        for parameter in reference.parameters():
            parameter.copy_(_bf16_exact(parameter))
        output_matrix = _output_matrix(reference, family)
        input_ids, attention_mask = source_batch(family)
        plain = reference.generate(
            torch.from_numpy(input_ids), attention_mask=torch.from_numpy(attention_mask),
            max_new_tokens=12, eos_token_id=None, pad_token_id=pad,
        ).numpy()[:, 1:]
        # The first (token, scale) - tokens by decreasing frequency (ties by id), then
        # scales - for which the rows end at varied steps.
        tokens, counts = np.unique(plain, return_counts=True)
        saved = output_matrix[eos].clone()
        candidates = [int(t) for t in tokens[np.lexsort((tokens, -counts))] if t not in (eos, pad)]
        for token, scale in ((t, s) for t in candidates for s in EOS_SCALES):
            output_matrix[eos] = _bf16_exact(output_matrix[token] * scale)
            trial = reference.generate(
                torch.from_numpy(input_ids), attention_mask=torch.from_numpy(attention_mask),
                max_new_tokens=12,
            ).numpy()
            if ends_at_varied_steps(finish_lengths(trial, eos)):
                break
            output_matrix[eos] = saved
        else:
            raise AssertionError(f"no EOS row choice makes {family} rows end at varied steps")
    return reference


def ours_from_reference(reference, family):
    """Our model with the reference's config and weights."""
    from helpers import ours_from_reference as load

    from tfmodels import M2M100ForConditionalGeneration, MT5ForConditionalGeneration

    our_class = MT5ForConditionalGeneration if family == "mt5" else M2M100ForConditionalGeneration
    return load(our_class, reference)


def reference_generate(reference, input_ids, attention_mask, **options):
    """Runs the reference's generate; returns `(sequences, sequences_scores or None)`."""
    import torch

    options = dict(options)
    for key in ("forced_bos_token_id",):
        if isinstance(options.get(key), np.integer):
            options[key] = int(options[key])
    if "decoder_input_ids" in options:
        options["decoder_input_ids"] = torch.from_numpy(np.asarray(options["decoder_input_ids"]))
    with torch.no_grad():
        out = reference.generate(
            torch.from_numpy(np.asarray(input_ids)),
            attention_mask=torch.from_numpy(np.asarray(attention_mask)),
            return_dict_in_generate=True,
            output_scores=True,
            **options,
        )
    scores = getattr(out, "sequences_scores", None)
    return out.sequences.numpy(), (None if scores is None else scores.numpy())


def our_generate(model, input_ids, attention_mask, **options):
    """Our generate; returns `(sequences, sequences_scores or None)` as numpy."""
    out = model.generate(input_ids, attention_mask=attention_mask,
                         return_dict_in_generate=True, **options)
    scores = out.sequences_scores
    return out.sequences.numpy(), (None if scores is None else scores.numpy())


def load_fixture_model(family):
    """Our model from the committed fixture checkpoint (torch-free)."""
    from tfmodels import M2M100ForConditionalGeneration, MT5ForConditionalGeneration

    our_class = MT5ForConditionalGeneration if family == "mt5" else M2M100ForConditionalGeneration
    return our_class.from_pretrained(os.path.join(GENERATION_FIXTURE_DIR, family))


def load_golden():
    with open(os.path.join(GENERATION_FIXTURE_DIR, "golden.json"), encoding="utf-8") as handle:
        return json.load(handle)


# ------------------------------------------------------------------------------ the cases
# Cases shared by the live parity tests and the golden fixture. Within a group every case
# runs on one compiled function (only run-time options differ), which keeps the suite fast.
MAX_NEW = 12
PER_EXAMPLE_BOS = [5, 7, 9, 11, 13, 15, 17, 19]  # one forced first token per input row

GREEDY_CASES = [
    ("greedy", dict(max_new_tokens=MAX_NEW)),
    ("greedy_min_new_tokens", dict(max_new_tokens=MAX_NEW, min_new_tokens=5)),
]
BEAM_CASES = [
    ("beam4_lp0.6_early_stop_n2", dict(max_new_tokens=MAX_NEW, num_beams=4, length_penalty=0.6,
                                       early_stopping=True, num_return_sequences=2)),
    ("beam4_lp1.5_no_early_stop", dict(max_new_tokens=MAX_NEW, num_beams=4, length_penalty=1.5,
                                       early_stopping=False)),
    ("beam4_lp2_never_n4", dict(max_new_tokens=MAX_NEW, num_beams=4, length_penalty=2.0,
                                early_stopping="never", num_return_sequences=4)),
]
# M2M100's target-language token: one id for the batch, or one per example ("per_row").
FORCED_BOS_CASES = [
    ("greedy_forced_bos", dict(max_new_tokens=MAX_NEW, forced_bos_token_id=7)),
    ("greedy_forced_bos_per_row", dict(max_new_tokens=MAX_NEW, forced_bos_token_id="per_row")),
    ("beam4_forced_bos_n3", dict(max_new_tokens=MAX_NEW, num_beams=4, forced_bos_token_id=9,
                                 num_return_sequences=3, length_penalty=0.8)),
    ("beam4_forced_bos_per_row", dict(max_new_tokens=MAX_NEW, num_beams=4,
                                      forced_bos_token_id="per_row")),
]


def golden_cases(family):
    cases = GREEDY_CASES + BEAM_CASES
    return cases + FORCED_BOS_CASES if family == "m2m100" else cases


def fill_token(family, options):
    """What the reference pads finished rows with: pad for greedy, `pad or eos` for beams."""
    eos, pad = FAMILIES[family][2], FAMILIES[family][3]
    return (pad or eos) if options.get("num_beams", 1) > 1 else pad


def expected_rows(sequences, scores, num_inputs, per_input):
    """Reference output -> `[input][returned] -> (ids without trailing fill..., score)`."""
    rows = []
    for index in range(num_inputs):
        rows.append([
            (list(map(int, sequences[index * per_input + j])),
             None if scores is None else float(scores[index * per_input + j]))
            for j in range(per_input)
        ])
    return rows


def reference_case(reference, family, input_ids, attention_mask, options):
    """Runs one case on the reference; per-row forced BOS runs one input at a time (the
    reference takes a single forced id). Returns `expected_rows(...)`."""
    options = dict(options)
    per_input = options.get("num_return_sequences", 1)
    if options.get("forced_bos_token_id") == "per_row":
        rows = []
        for index, bos in enumerate(PER_EXAMPLE_BOS[: len(input_ids)]):
            options["forced_bos_token_id"] = bos
            sequences, scores = reference_generate(
                reference, input_ids[index : index + 1], attention_mask[index : index + 1],
                **options,
            )
            rows += expected_rows(sequences, scores, 1, per_input)
        return rows
    sequences, scores = reference_generate(reference, input_ids, attention_mask, **options)
    return expected_rows(sequences, scores, len(input_ids), per_input)


def our_options(options, num_inputs):
    options = dict(options)
    if options.get("forced_bos_token_id") == "per_row":
        options["forced_bos_token_id"] = PER_EXAMPLE_BOS[:num_inputs]
    return options


def assert_generation_matches(sequences, scores, expected, fill, what, score_atol=1e-4,
                              check_scores=True):
    """Our `[inputs * returned, length]` output against `expected_rows`: identical ids up
    to each expected row's length, only `fill` after it (a per-row reference run ends at
    its own longest row), and sequence scores within `score_atol`."""
    sequences = np.asarray(sequences)
    per_input = len(expected[0])
    assert sequences.shape[0] == len(expected) * per_input, (what, sequences.shape)
    longest = max(len(ids) for row in expected for ids, _ in row)
    assert sequences.shape[1] == longest, f"{what}: length {sequences.shape[1]}, reference {longest}"
    for index, row in enumerate(expected):
        for j, (ids, score) in enumerate(row):
            ours = sequences[index * per_input + j]
            assert ours[: len(ids)].tolist() == ids, (
                f"{what}: input {index} sequence {j}:\nours      {ours.tolist()}\n"
                f"reference {ids}"
            )
            assert (ours[len(ids):] == fill).all(), f"{what}: input {index}: tail {ours.tolist()}"
            if score is not None and check_scores:
                assert scores is not None, f"{what}: no sequences_scores"
                ours_score = float(np.asarray(scores)[index * per_input + j])
                assert abs(ours_score - score) <= score_atol, (
                    f"{what}: input {index} sequence {j}: score {ours_score} vs {score}"
                )


# ------------------------------------------------------------------------------ the checks
@pytest.mark.torch
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_reference_rows_end_at_different_steps(transformers, family):
    reference = build_reference(transformers, family)
    input_ids, attention_mask = source_batch(family)
    sequences, _ = reference_generate(reference, input_ids, attention_mask, max_new_tokens=12)
    assert ends_at_varied_steps(finish_lengths(sequences, FAMILIES[family][2]))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_fixture_rows_end_at_different_steps(family):
    golden = load_golden()[family]
    greedy = next(case for case in golden["cases"] if case["name"] == "greedy")
    sequences = [ids for row in greedy["expected"] for ids, _ in row]
    assert ends_at_varied_steps(finish_lengths(sequences, FAMILIES[family][2]))
