"""TF Serving's REST `:predict` JSON <-> numpy, as the server converts it.

The server accepts two request forms (`POST /v1/models/NAME:predict`):

* row ("instances"): a list with one entry per example. With several named inputs each
  entry is an object `{input: value}`, and the server stacks each input over the entries
  (so every input gets the batch as its first dimension); with one input an entry is the
  value itself. The answer is `{"predictions": [...]}`, one entry per example.
* columnar ("inputs"): an object `{input: value}` (or the value itself for a one-input
  signature) whose values are whole tensors, scalars included. The answer is
  `{"outputs": {output: value}}`.

JSON numbers take the signature's dtype; a string is a `tf.string`; `{"b64": "..."}` is a
base64-encoded byte string. This module reproduces those rules so the README examples can
be run against a SavedModel without the server.

Example:
>>> specs = {"text": ("string", [-1])}
>>> name, inputs = request_to_inputs({"instances": ["Hello", "Bye"]}, specs)
>>> name, inputs["text"].tolist()
('serving_default', [b'Hello', b'Bye'])
"""

import base64

import numpy as np

DEFAULT_SIGNATURE = "serving_default"
NUMPY_DTYPES = {"string": object, "int32": np.int32, "int64": np.int64, "float": np.float32,
                "float32": np.float32, "double": np.float64, "bool": np.bool_}


class RestRequestError(ValueError):
    """A request the server would refuse before running the model (HTTP 400)."""


def _decode_strings(value):
    if isinstance(value, dict):
        if set(value) != {"b64"}:
            raise RestRequestError(f"an object value must be {{\"b64\": ...}}, got keys {sorted(value)}")
        return base64.b64decode(value["b64"])
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, list):
        return [_decode_strings(item) for item in value]
    raise RestRequestError(f"expected a string, got {value!r}")


def _to_array(value, dtype_name, input_name):
    dtype = NUMPY_DTYPES.get(dtype_name)
    if dtype is None:
        raise RestRequestError(f"input {input_name!r} has unsupported dtype {dtype_name}")
    if dtype is object:
        return np.array(_decode_strings(value), dtype=object)
    try:
        return np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as error:
        raise RestRequestError(f"input {input_name!r}: {error}") from None


def request_to_inputs(body, input_specs):
    """`(signature_name, {input: numpy array})` from a parsed `:predict` JSON body.

    Args:
        body: the request object (`json.loads` of the HTTP body).
        input_specs: `{input name: (dtype name, shape)}` of the signature
            (`signature_docs.signature_specs(...)[name]["inputs"]`).
    """
    signature_name = body.get("signature_name", DEFAULT_SIGNATURE)
    if ("instances" in body) == ("inputs" in body):
        raise RestRequestError('a request needs exactly one of "instances" or "inputs"')
    names = sorted(input_specs)
    if "instances" in body:
        instances = body["instances"]
        if not isinstance(instances, list):
            raise RestRequestError('"instances" must be a list')
        if instances and all(isinstance(item, dict) and "b64" not in item for item in instances):
            columns = {}
            for item in instances:
                if sorted(item) != names:
                    raise RestRequestError(
                        f"every instance needs exactly the inputs {names}, got {sorted(item)}"
                    )
                for name in names:
                    columns.setdefault(name, []).append(item[name])
        else:
            if len(names) != 1:
                raise RestRequestError(f"instances must be objects with the inputs {names}")
            columns = {names[0]: instances}
        inputs = {name: _to_array(values, input_specs[name][0], name) for name, values in columns.items()}
        return signature_name, inputs

    given = body["inputs"]
    if not isinstance(given, dict) or (len(names) == 1 and names[0] not in given):
        if len(names) != 1:
            raise RestRequestError(f'"inputs" must be an object with the inputs {names}')
        given = {names[0]: given}
    if sorted(given) != names:
        raise RestRequestError(f"the signature takes the inputs {names}, got {sorted(given)}")
    inputs = {name: _to_array(given[name], input_specs[name][0], name) for name in names}
    return signature_name, inputs


def _jsonable(array):
    array = np.asarray(array)
    if array.dtype == object:
        return np.vectorize(lambda item: item.decode("utf-8"), otypes=[object])(array).tolist() if array.size else array.tolist()
    return array.tolist()


def outputs_to_response(outputs, row_format):
    """The JSON answer for `{output: numpy array}` in the form the request used."""
    if not row_format:
        if len(outputs) == 1:
            return {"outputs": _jsonable(next(iter(outputs.values())))}
        return {"outputs": {name: _jsonable(value) for name, value in outputs.items()}}
    sizes = {name: np.shape(value)[0] for name, value in outputs.items()}
    if len(set(sizes.values())) > 1:
        raise RestRequestError(f"row format needs outputs with one batch size, got {sizes}")
    batch = next(iter(sizes.values()), 0)
    if len(outputs) == 1:
        return {"predictions": _jsonable(next(iter(outputs.values())))}
    columns = {name: _jsonable(value) for name, value in outputs.items()}
    return {"predictions": [{name: columns[name][index] for name in columns} for index in range(batch)]}
