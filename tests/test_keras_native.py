"""The models as Keras 3 users use them: inside functional models and their own subclassed
models (trained, saved as `.keras` and loaded back), headless training with plain Keras
`compile`/`fit`, dict inputs, `model.export` and `tf.saved_model.save`."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from test_training_support import SMALL_M2M100, SMALL_MT5
from tfmodels import (M2M100Config, M2M100ForConditionalGeneration, M2M100Model, MT5Config,
                      MT5EncoderModel, MT5ForConditionalGeneration, MT5Model)

IDS = np.array([[5, 6, 7, 1], [8, 9, 1, 0], [10, 11, 12, 1], [13, 1, 0, 0]], np.int32)
MASK = (IDS != 0).astype(np.int32)
CLASSES = [MT5ForConditionalGeneration, MT5Model, MT5EncoderModel,
           M2M100ForConditionalGeneration, M2M100Model]


def _tiny(cls):
    keras.utils.set_random_seed(0)
    if cls.__name__.startswith("MT5"):
        return cls(MT5Config(**SMALL_MT5))
    return cls(M2M100Config(**SMALL_M2M100))


def _inputs(model):
    inputs = {"input_ids": IDS, "attention_mask": MASK}
    if model.decoder is not None:
        inputs["decoder_input_ids"] = IDS
    return inputs


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_models_work_inside_functional_keras_models(cls):
    model = _tiny(cls)
    key = "logits" if model.has_lm_head else "last_hidden_state"
    symbolic = {name: keras.Input((None,), dtype="int32", name=name) for name in _inputs(model)}
    wrapper = keras.Model(symbolic, model(**symbolic)[key])
    np.testing.assert_allclose(wrapper.predict(_inputs(model), verbose=0),
                               model(**_inputs(model))[key].numpy(), rtol=1e-5, atol=1e-5)


@keras.saving.register_keras_serializable("tfmodels_tests")
class MeanPooledClassifier(keras.Model):
    """A user's classifier: our encoder, mean pooling and a Dense head."""

    def __init__(self, encoder, **kwargs):
        super().__init__(**kwargs)
        self.encoder_model, self.head = encoder, keras.layers.Dense(2)

    def call(self, inputs, training=False):
        hidden = self.encoder_model(input_ids=inputs["input_ids"],
                                    attention_mask=inputs["attention_mask"],
                                    training=training)["last_hidden_state"]
        mask = tf.cast(inputs["attention_mask"], hidden.dtype)[..., None]
        return self.head(tf.reduce_sum(hidden * mask, 1) / tf.reduce_sum(mask, 1))

    def get_config(self):
        return {**super().get_config(),
                "encoder": keras.saving.serialize_keras_object(self.encoder_model)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(keras.saving.deserialize_keras_object(config.pop("encoder")), **config)


def test_a_users_classifier_around_the_encoder_trains_and_survives_a_keras_file(tmp_path):
    """Keras rebuilds the loaded classifier by calling it on float32 placeholders: our
    model takes them there (only shapes matter), so the head is built and restored."""
    x, y = {"input_ids": IDS, "attention_mask": MASK}, np.array([0, 1, 1, 0])
    classifier = MeanPooledClassifier(_tiny(MT5EncoderModel))
    classifier.compile(optimizer="adam",
                       loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    classifier.fit(x, y, epochs=1, batch_size=2, verbose=0)
    classifier.save(tmp_path / "classifier.keras")
    loaded = keras.saving.load_model(tmp_path / "classifier.keras")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), classifier.predict(x, verbose=0))
    with pytest.raises(TypeError, match="input_ids must hold .* got dtype float32"):
        classifier.encoder_model(input_ids=IDS.astype(np.float32))  # outside Keras' build


def test_headless_models_train_and_save_with_plain_keras_compile(tmp_path):
    encoder = _tiny(MT5EncoderModel)
    encoder.compile(optimizer="adam", loss="mse")
    before = [w.numpy() for w in encoder.trainable_weights]
    history = encoder.fit({"input_ids": IDS, "attention_mask": MASK},
                          np.zeros([4, 4, SMALL_MT5["d_model"]], np.float32), verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert any(not np.array_equal(a, b.numpy()) for a, b in zip(before, encoder.trainable_weights))
    encoder.save(tmp_path / "encoder.keras")
    assert keras.saving.load_model(tmp_path / "encoder.keras").loss == "mse"


def test_dict_inputs_refuse_unknown_keys():
    model = _tiny(MT5ForConditionalGeneration)
    with pytest.raises(TypeError, match=r"Unexpected model inputs \['attention_masks'\]"):
        model({"input_ids": IDS, "attention_masks": MASK, "decoder_input_ids": IDS})


def test_export_and_saved_model_save_serve_the_forward_pass(tmp_path):
    """Built at construction, the model has no recorded call shapes: both take its int32
    token-input signature."""
    model = _tiny(M2M100Model)
    expected = model(**_inputs(model))["last_hidden_state"].numpy()
    model.export(str(tmp_path / "exported"), verbose=False)
    exported = tf.saved_model.load(str(tmp_path / "exported"))  # kept: it owns the variables
    served = exported.serve(_inputs(model))
    np.testing.assert_allclose(served["last_hidden_state"].numpy(), expected, rtol=1e-5, atol=1e-6)
    tf.saved_model.save(model, str(tmp_path / "saved"))
    saved = tf.saved_model.load(str(tmp_path / "saved"))
    signature = saved.signatures["serving_default"]
    outputs = signature(**{name: tf.constant(value) for name, value in _inputs(model).items()})
    np.testing.assert_allclose(outputs["last_hidden_state"].numpy(), expected, rtol=1e-5,
                               atol=1e-6)
