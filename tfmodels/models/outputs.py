"""Model outputs that read like the reference's: `out.logits` and `out["logits"]` both work."""


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
