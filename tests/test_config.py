"""MT5Config / M2M100Config: the reference's config.json in and out, and clear errors."""

import copy
import json

import pytest

from helpers import M2M100_418M_CONFIG_JSON, MT5_SMALL_CONFIG_JSON, TINY_M2M100, TINY_MT5
from tfmodels import ConfigError, M2M100Config, MT5Config

# ------------------------------------------------------------------- real config.json files


def test_reads_real_mt5_small_config():
    config = MT5Config.from_dict(copy.deepcopy(MT5_SMALL_CONFIG_JSON))
    assert (config.vocab_size, config.d_model, config.d_kv, config.d_ff) == (250112, 512, 64, 1024)
    assert (config.num_layers, config.num_decoder_layers, config.num_heads) == (8, 8, 6)
    assert config.relative_attention_num_buckets == 32
    # Absent from mt5-small's file: the reference's default applies.
    assert config.relative_attention_max_distance == 128
    assert config.feed_forward_proj == "gated-gelu" and config.is_gated_act
    assert config.dense_act_fn == "gelu_new"  # gated-gelu is the tanh approximation
    assert config.tie_word_embeddings is False
    assert (config.pad_token_id, config.eos_token_id, config.decoder_start_token_id) == (0, 1, 0)
    assert config.dropout_rate == 0.1 and config.layer_norm_epsilon == 1e-6
    # Keys the model does not use are kept, not dropped.
    assert config.extra["architectures"] == ["MT5ForConditionalGeneration"]
    assert config.extra["_name_or_path"] == "/home/patrick/hugging_face/t5/mt5-small"


def test_reads_real_m2m100_418m_config():
    config = M2M100Config.from_dict(copy.deepcopy(M2M100_418M_CONFIG_JSON))
    assert (config.vocab_size, config.d_model, config.max_position_embeddings) == (
        128112, 1024, 1024)
    assert (config.encoder_layers, config.decoder_layers) == (12, 12)
    assert (config.encoder_attention_heads, config.decoder_attention_heads) == (16, 16)
    assert (config.encoder_ffn_dim, config.decoder_ffn_dim) == (4096, 4096)
    assert config.scale_embedding is True and config.activation_function == "relu"
    assert (config.encoder_layerdrop, config.decoder_layerdrop) == (0.05, 0.05)
    assert (config.pad_token_id, config.bos_token_id, config.eos_token_id,
            config.decoder_start_token_id) == (1, 0, 2, 2)
    assert config.extra["num_beams"] == 5 and config.extra["max_length"] == 200


@pytest.mark.parametrize(
    "config_class, values",
    [(MT5Config, MT5_SMALL_CONFIG_JSON), (M2M100Config, M2M100_418M_CONFIG_JSON)],
    ids=["mt5-small", "m2m100_418M"],
)
def test_dict_round_trip_keeps_every_key(config_class, values):
    config = config_class.from_dict(copy.deepcopy(values))
    written = config.to_dict()
    for key, value in values.items():
        assert written[key] == value, key
    assert config_class.from_dict(written) == config
    # json-serialisable as is
    assert json.loads(json.dumps(written)) == written


@pytest.mark.parametrize(
    "config_class, values",
    [(MT5Config, MT5_SMALL_CONFIG_JSON), (M2M100Config, M2M100_418M_CONFIG_JSON)],
    ids=["mt5-small", "m2m100_418M"],
)
def test_save_pretrained_round_trip_keeps_unknown_keys(config_class, values, tmp_path):
    values = dict(copy.deepcopy(values), my_custom_field={"nested": [1, 2]}, task_specific="x")
    config = config_class.from_dict(values)
    config.save_pretrained(str(tmp_path))
    with open(tmp_path / "config.json") as handle:
        on_disk = json.load(handle)
    for key, value in values.items():
        assert on_disk[key] == value, key
    reloaded = config_class.from_pretrained(str(tmp_path))
    assert reloaded == config
    assert reloaded.extra["my_custom_field"] == {"nested": [1, 2]}


def test_mt5_defaults_are_mt5_small_and_num_decoder_layers_follows_num_layers():
    config = MT5Config(num_layers=3)
    assert config.num_decoder_layers == 3
    assert MT5Config().d_model == 512 and MT5Config().vocab_size == 250112
    assert MT5Config.from_dict({"num_layers": 4, "num_decoder_layers": 2}).num_decoder_layers == 2


def test_plain_t5_model_type_is_accepted_by_mt5_config():
    assert MT5Config.from_dict(dict(TINY_MT5, model_type="t5")).d_model == TINY_MT5["d_model"]


def test_a_t5_configs_missing_keys_take_t5_defaults_and_it_stays_t5():
    """Keys a T5 config.json leaves out mean T5's defaults (a tied head, relu, ...), which
    differ from mT5's; written back, it is still a "t5" config."""
    t5 = MT5Config.from_dict({"model_type": "t5", "d_model": 32, "d_kv": 8})
    assert (t5.vocab_size, t5.d_ff, t5.num_layers, t5.num_heads, t5.feed_forward_proj,
            t5.tie_word_embeddings) == (32128, 2048, 6, 8, "relu", True)
    written = t5.to_dict()
    assert written["model_type"] == "t5" and written["tie_word_embeddings"] is True
    assert MT5Config.from_dict(written) == t5
    # An mT5 config is untouched: missing keys are mT5's defaults.
    mt5 = MT5Config.from_dict({"model_type": "mt5", "d_model": 32, "d_kv": 8})
    assert (mt5.feed_forward_proj, mt5.tie_word_embeddings) == ("gated-gelu", False)
    assert mt5.to_dict()["model_type"] == "mt5" == MT5Config().to_dict()["model_type"]


def test_reference_config_objects_round_trip(transformers):
    """What transformers writes is what we read, and what we write transformers reads."""
    for ours_class, theirs_class, values in (
        (MT5Config, transformers.MT5Config, TINY_MT5),
        (M2M100Config, transformers.M2M100Config, TINY_M2M100),
    ):
        theirs = theirs_class(**values)
        ours = ours_class.from_dict(json.loads(theirs.to_json_string()))
        for name in ours_class.field_names():
            assert getattr(ours, name) == getattr(theirs, name), (ours_class.__name__, name)
        back = theirs_class.from_dict(ours.to_dict())
        for name in ours_class.field_names():
            assert getattr(back, name) == getattr(theirs, name), (ours_class.__name__, name)


# ----------------------------------------------------------------------------- bad values
MT5_INVALID = [
    ({"d_model": -512}, "d_model"),
    ({"d_model": 0}, "d_model"),
    ({"vocab_size": 12.5}, "vocab_size"),
    ({"num_heads": True}, "num_heads"),
    ({"num_decoder_layers": -1}, "num_decoder_layers"),
    ({"feed_forward_proj": "gated-banana"}, "feed_forward_proj"),
    ({"feed_forward_proj": "fancy-gelu"}, "feed_forward_proj"),
    ({"feed_forward_proj": "gated-gelu-extra"}, "feed_forward_proj"),
    ({"dropout_rate": 1.5}, "dropout_rate"),
    ({"layer_norm_epsilon": 0.0}, "layer_norm_epsilon"),
    ({"pad_token_id": 96}, "pad_token_id"),
    ({"eos_token_id": 1000}, "eos_token_id"),
    ({"decoder_start_token_id": -3}, "decoder_start_token_id"),
]


@pytest.mark.parametrize("overrides, field", MT5_INVALID,
                         ids=[f"{key}={value}" for (values, _) in MT5_INVALID
                              for key, value in values.items()])
def test_invalid_mt5_values_raise_config_error_naming_the_field(overrides, field):
    with pytest.raises(ConfigError, match=field):
        MT5Config(**{**TINY_MT5, **overrides})
    with pytest.raises(ConfigError, match=field):
        MT5Config.from_dict({**TINY_MT5, **overrides})


M2M100_INVALID = [
    ({"d_model": -1024}, "d_model"),
    ({"d_model": 30}, "d_model=30 .*encoder_attention_heads=4"),  # 30 % 4 != 0
    ({"decoder_attention_heads": 5}, "d_model=32 .*decoder_attention_heads=5"),
    ({"encoder_ffn_dim": 0}, "encoder_ffn_dim"),
    ({"max_position_embeddings": -2}, "max_position_embeddings"),
    ({"activation_function": "banana"}, "activation_function"),
    ({"attention_dropout": -0.1}, "attention_dropout"),
    ({"decoder_layerdrop": 1.0}, "decoder_layerdrop"),
    ({"pad_token_id": 128}, "pad_token_id"),
    ({"decoder_start_token_id": 500}, "decoder_start_token_id"),
    ({"bos_token_id": "0"}, "bos_token_id"),
]


@pytest.mark.parametrize("overrides, field", M2M100_INVALID,
                         ids=[f"{key}={value}" for (values, _) in M2M100_INVALID
                              for key, value in values.items()])
def test_invalid_m2m100_values_raise_config_error_naming_the_field(overrides, field):
    with pytest.raises(ConfigError, match=field):
        M2M100Config(**{**TINY_M2M100, **overrides})


def test_config_error_is_a_value_error_and_names_the_value():
    with pytest.raises(ValueError, match=r"d_model.*-5"):
        MT5Config(d_model=-5)


@pytest.mark.parametrize(
    "config_class, values, wrong_type",
    [(MT5Config, TINY_MT5, "m2m_100"), (M2M100Config, TINY_M2M100, "mt5"),
     (M2M100Config, TINY_M2M100, "bart")],
)
def test_wrong_model_type_raises_config_error(config_class, values, wrong_type, tmp_path):
    with pytest.raises(ConfigError, match=rf"model_type.*{wrong_type}"):
        config_class.from_dict(dict(values, model_type=wrong_type))
    # and from a folder
    with open(tmp_path / "config.json", "w") as handle:
        json.dump(dict(values, model_type=wrong_type), handle)
    with pytest.raises(ConfigError, match="model_type"):
        config_class.from_pretrained(str(tmp_path))


def test_invalid_json_and_missing_file_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="config"):
        MT5Config.from_pretrained(str(tmp_path))
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="config.json: invalid JSON"):
        MT5Config.from_pretrained(str(tmp_path))
    (tmp_path / "config.json").write_bytes(b"\xff\xfe binary")
    with pytest.raises(ConfigError, match="config.json: invalid JSON"):
        MT5Config.from_pretrained(str(tmp_path))
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="config.json: expected a JSON object, got list"):
        MT5Config.from_pretrained(str(tmp_path))


def test_a_keras_config_from_before_the_out_in_kernels_is_refused_by_name():
    """`.keras` files restore variables by shape and order: one written when projection
    kernels were stored [in, out] would load square kernels transposed, so it is refused."""
    from tfmodels import M2M100ForConditionalGeneration

    model = M2M100ForConditionalGeneration(M2M100Config(**TINY_M2M100))
    config = model.get_config()
    assert config["projection_kernel_layout"] == "out_in"
    assert M2M100ForConditionalGeneration.from_config(config).get_config() == config
    del config["projection_kernel_layout"]
    with pytest.raises(ValueError, match="projection kernels 'in_out'.*save_pretrained"):
        M2M100ForConditionalGeneration.from_config(config)


def test_reference_alias_keys_and_relative_bucket_limits():
    """The reference's alias keys (its `attribute_map`) set the fields they stand for;
    bucket settings the bucket function cannot work with are refused by name."""
    from tfmodels import M2M100Config, MT5Config
    from tfmodels.models.config_base import ConfigError

    m2m100 = M2M100Config.from_dict({"model_type": "m2m_100", "num_attention_heads": 2,
                                     "hidden_size": 16})
    assert (m2m100.encoder_attention_heads, m2m100.d_model) == (2, 16)
    assert "num_attention_heads" not in m2m100.to_dict()
    mt5 = MT5Config.from_dict({"model_type": "mt5", "hidden_size": 16, "num_attention_heads": 2,
                               "num_hidden_layers": 3, "head_dim": 8})
    assert (mt5.d_model, mt5.num_heads, mt5.num_layers, mt5.d_kv) == (16, 2, 3, 8)
    with pytest.raises(ConfigError, match="sets d_model=32 and its alias hidden_size=16"):
        MT5Config.from_dict({"model_type": "mt5", "d_model": 32, "hidden_size": 16})
    for buckets, distance in ((8, 3), (32, 16), (3, 128)):
        with pytest.raises(ConfigError, match=f"relative_attention_num_buckets={buckets} and "
                                              f"relative_attention_max_distance={distance}"):
            MT5Config(relative_attention_num_buckets=buckets,
                      relative_attention_max_distance=distance)
    MT5Config(relative_attention_num_buckets=8, relative_attention_max_distance=5)
