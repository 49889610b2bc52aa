"""`export_savedmodel`: checkpoint folder in, TF Serving model folder out.

Layout written under `out_dir` (the server's model base path):

    out_dir/
      models.config                        example --model_config_file for this model
      <version>/                           numeric version folder (1, 2, ...)
        saved_model.pb, variables/         the SavedModel (signatures: see serving_module)
        assets.extra/
          tf_serving_warmup_requests       PredictionLog records replayed at load
          tfmodels_export.json             what was exported, with which settings

The version folder is written under a temporary name and renamed when complete, so a
server polling `out_dir` never loads a half-written version.
"""

import dataclasses
import json
import os
import shutil
import time

import tensorflow as tf

from savedmodel import serving_config, warmup
from savedmodel.checkpoint import load_checkpoint, model_family
from savedmodel.export_settings import ExportSettings
from savedmodel.serving_module import ServingModule

EXPORT_INFO_FILE = "tfmodels_export.json"


@dataclasses.dataclass
class ExportResult:
    """What `export_savedmodel` wrote."""

    saved_model_dir: str
    version: int
    signature_names: list
    settings: ExportSettings
    seconds: float


def next_version(out_dir):
    """One above the highest numeric folder in `out_dir` (1 when there is none)."""
    if not os.path.isdir(out_dir):
        return 1
    versions = [int(name) for name in os.listdir(out_dir) if name.isdigit()]
    return max(versions, default=0) + 1


def export_savedmodel(checkpoint_dir, out_dir, settings=None, model=None, tokenizer=None):
    """Exports a checkpoint (weights + tokenizer files) as a TF Serving SavedModel.

    Args:
        checkpoint_dir: folder with config.json, weights and tokenizer files (ignored when
            `model` and `tokenizer` are given).
        out_dir: the model base path; the SavedModel goes to `out_dir/<version>/`.
        settings: `ExportSettings` (None = checkpoint defaults).
        model, tokenizer: an already loaded model and tokenizer (optional); with
            `settings.weight_quantization` the model is quantised in place, with
            `settings.head_screening` its head screened in place. A
            `settings.dtype` must then be the model's own dtype.

    Returns:
        An `ExportResult`.

    Example (the bundled translator; `out_dir` gets version folder 1):
    >>> import os, tempfile
    >>> from tfmodels import BUNDLED_TRANSLATOR_DIR
    >>> out_dir = tempfile.mkdtemp()
    >>> result = export_savedmodel(BUNDLED_TRANSLATOR_DIR, out_dir,
    ...                            ExportSettings(num_beams=4, max_new_tokens=16))
    >>> result.saved_model_dir == os.path.join(out_dir, "1"), result.signature_names[0]
    (True, 'serving_default')
    """
    started = time.perf_counter()
    settings = settings or ExportSettings()
    if model is None or tokenizer is None:
        model, tokenizer = load_checkpoint(checkpoint_dir, dtype=settings.dtype)
    elif settings.dtype is not None and model.dtype_policy.name != settings.dtype:
        raise ValueError(
            f"settings.dtype is {settings.dtype!r} but the model passed in is "
            f"{model.dtype_policy.name!r}; load it with from_pretrained(..., dtype="
            f"{settings.dtype!r}) or leave settings.dtype unset"
        )
    if settings.weight_quantization and model.weight_quantization != settings.weight_quantization:
        model.quantize_weights(settings.weight_quantization)  # in place, as documented
    if settings.head_screening and model.head_screen is None:
        model.enable_head_screening()  # in place too
    # A model passed in quantised is exported (and recorded) quantised.
    settings = settings.replace(weight_quantization=model.weight_quantization)
    settings = settings.with_checkpoint_defaults(model)
    # abspath: "." or ".." name the folder itself, not a path fragment.
    model_name = settings.model_name or os.path.basename(os.path.abspath(out_dir)) or "model"
    settings = settings.replace(model_name=model_name)

    version = settings.version or next_version(out_dir)
    settings = settings.replace(version=version)  # recorded and reported as written
    final_dir = os.path.join(out_dir, str(version))
    if os.path.exists(final_dir):
        raise FileExistsError(f"{final_dir} already exists; pick another version")
    staging_dir = os.path.join(out_dir, f".tmp-{version}-{os.getpid()}")
    shutil.rmtree(staging_dir, ignore_errors=True)
    os.makedirs(out_dir, exist_ok=True)

    module = ServingModule(model, tokenizer, settings)
    signatures = module.signatures()
    try:
        tf.saved_model.save(module, staging_dir, signatures=signatures)
        if settings.warmup:
            plan = warmup.warmup_plan(list(signatures), module.codec, settings)
            warmup.write_warmup_file(staging_dir, model_name, plan)
        _write_export_info(staging_dir, checkpoint_dir, model, settings, list(signatures))
        os.rename(staging_dir, final_dir)
    except BaseException:
        shutil.rmtree(staging_dir, ignore_errors=True)
        raise
    serving_config.write_models_config(out_dir, model_name)
    return ExportResult(
        saved_model_dir=final_dir,
        version=version,
        signature_names=list(signatures),
        settings=settings,
        seconds=time.perf_counter() - started,
    )


def _write_export_info(saved_model_dir, checkpoint_dir, model, settings, signature_names):
    directory = os.path.join(saved_model_dir, warmup.WARMUP_DIR)
    os.makedirs(directory, exist_ok=True)
    info = {
        "checkpoint": os.path.abspath(checkpoint_dir) if checkpoint_dir else None,
        "model_type": model.config.model_type,
        "family": model_family(model),
        "vocab_size": int(model.config.vocab_size),
        "d_model": int(model.config.d_model),
        "dtype": model.dtype_policy.name,
        "signatures": signature_names,
        "settings": dataclasses.asdict(settings),
        "tensorflow": tf.__version__,
    }
    with open(os.path.join(directory, EXPORT_INFO_FILE), "w", encoding="utf-8") as handle:
        json.dump(info, handle, indent=2)
