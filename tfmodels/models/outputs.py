"""Model outputs that read like the reference's: `out.logits` and `out["logits"]` both work."""

import optree  # Keras' own structure library (a Keras dependency)


class ModelOutput(dict):
    """A dict whose keys are also attributes; absent optional outputs read as None.

    Example:
    >>> out = ModelOutput(logits=1)
    >>> out.logits, out["logits"], out.loss
    (1, 1, None)
    """

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return self.get(name)

    def __setattr__(self, name, value):
        self[name] = value

    def to_tuple(self):
        """Values in insertion order, skipping absent ones."""
        return tuple(value for value in self.values() if value is not None)


def _flatten_model_output(output):
    keys = sorted(output)  # as Keras flattens a dict
    return [output[key] for key in keys], keys, keys


# Keras walks structures with optree in its own namespace, where an unregistered dict
# subclass is one opaque leaf: functional models, `fit` losses and `predict` could not
# see the tensors inside.
optree.register_pytree_node(
    ModelOutput, _flatten_model_output,
    lambda keys, values: ModelOutput(zip(keys, values)), namespace="keras")
