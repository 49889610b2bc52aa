"""The JSON files of a model folder (``config.json``, ``generation_config.json``, shard
indexes): read as one JSON object, with errors that name the file.

Example::

    >>> import json, os, tempfile
    >>> from converters.json_files import read_json_object
    >>> path = os.path.join(tempfile.mkdtemp(), "config.json")
    >>> with open(path, "w") as handle:
    ...     json.dump({"d_model": 32}, handle)
    >>> read_json_object(path)
    {'d_model': 32}
    >>> with open(path, "w") as handle:
    ...     json.dump([1, 2], handle)
    >>> read_json_object(path)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: ...config.json: expected a JSON object, got list
"""

from __future__ import annotations

import json
import os
from typing import Any

__all__ = ["read_json_object"]


def read_json_object(path: str | os.PathLike, error_class: type[Exception] = ValueError) -> dict[str, Any]:
    """The JSON object (a dict) stored at ``path``.

    Raises ``error_class`` (a ValueError subclass such as ``ConfigError``, or ValueError)
    naming the file when it is not UTF-8 JSON or holds something other than an object; a
    missing file raises the FileNotFoundError of ``open``.
    """
    path = os.fspath(path)
    with open(path, encoding="utf-8") as handle:
        try:
            value = json.load(handle)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise error_class(f"{path}: invalid JSON ({error})") from None
    if not isinstance(value, dict):
        raise error_class(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value
