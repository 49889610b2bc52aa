"""SavedModel export for TF Serving: strings in, strings out, on the stock server's defaults.

>>> import tempfile
>>> import tensorflow as tf
>>> from savedmodel import ExportSettings, export_savedmodel
>>> from tfmodels import BUNDLED_TRANSLATOR_DIR
>>> result = export_savedmodel(BUNDLED_TRANSLATOR_DIR, tempfile.mkdtemp(),
...                            ExportSettings(num_beams=4, max_new_tokens=16))
>>> translate = tf.saved_model.load(result.saved_model_dir).signatures["serving_default"]
>>> translate(text=tf.constant(["Switzerland", "January"]), src_lang=tf.constant("en"),
...           tgt_lang=tf.constant("de"))["text"].numpy().tolist()
[b'Schweiz', b'Januar']

See `savedmodel/README.md` for the signatures, the serving commands and request examples.
The names below are imported on first use, so `import savedmodel.cli` (the command line's
argument parser) does not load TensorFlow.
"""

import importlib

_EXPORTS = {
    "ExportResult": "savedmodel.export",
    "export_savedmodel": "savedmodel.export",
    "next_version": "savedmodel.export",
    "ExportSettings": "savedmodel.export_settings",
    "ServingModule": "savedmodel.serving_module",
    "signature_names": "savedmodel.serving_module",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'savedmodel' has no attribute {name!r}")
