"""Example TF Serving configuration written next to the version folders."""

import os

MODELS_CONFIG_FILE = "models.config"


def models_config_text(model_name, container_base_path=None):
    """A `--model_config_file` for one model (text-format `ModelServerConfig`).

    Example:
    >>> print(models_config_text("mt5"))  # doctest: +NORMALIZE_WHITESPACE
    model_config_list {
      config {
        name: "mt5"
        base_path: "/models/mt5"
        model_platform: "tensorflow"
        model_version_policy { latest { num_versions: 1 } }
      }
    }
    """
    base_path = container_base_path or f"/models/{model_name}"
    return (
        "model_config_list {\n"
        "  config {\n"
        f'    name: "{model_name}"\n'
        f'    base_path: "{base_path}"\n'
        '    model_platform: "tensorflow"\n'
        "    model_version_policy { latest { num_versions: 1 } }\n"
        "  }\n"
        "}\n"
    )


def write_models_config(out_dir, model_name):
    path = os.path.join(out_dir, MODELS_CONFIG_FILE)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(models_config_text(model_name))
    return path
