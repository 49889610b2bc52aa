"""Optimizers for fine-tuning: Adafactor with the T5 / Hugging Face semantics, AdamW defaults.

Why our own Adafactor: `keras.optimizers.Adafactor` (Keras 3.15) differs from the
Adafactor T5 recipes are tuned with (`transformers.optimization.Adafactor`, itself the
fairseq/Mesh-TensorFlow algorithm):

* Keras always multiplies the step by `max(epsilon_2, RMS(param))` — there is no
  `scale_parameter=False`, which is what the usual T5 fine-tuning recipe
  (`lr=1e-3, scale_parameter=False, relative_step=False`) needs;
* Keras always caps the step at `1/sqrt(t)`, even with `relative_step=False`, and with
  `relative_step=True` it uses `min(learning_rate, 1/sqrt(t))` where the reference uses
  `min(1e-2, 1/sqrt(t))` (or `1e-6 * t` with `warmup_init`);
* Keras has no first moment (`beta1`) and its weight decay is the generic decoupled one
  scaled by the base learning rate, not by the relative step;
* Keras counts `iterations` per micro-batch when its own gradient accumulation is on,
  which shifts the `t`-dependent schedule (ours only ever sees real updates).

`Adafactor` below follows the reference update rule term for term; the test suite checks
it against `transformers.optimization.Adafactor` step by step.

Our default (`get_optimizer("auto")` for mT5) is the T5 fine-tuning standard:
`Adafactor(learning_rate=1e-3, relative_step=False, scale_parameter=False,
warmup_init=False, clip_threshold=1.0, decay_rate=-0.8, beta_1=None)` — a constant
1e-3 step, update clipping at RMS 1, factored second moments, no momentum.
M2M100's default is AdamW (fairseq's betas (0.9, 0.98)).
"""

import keras
import tensorflow as tf

# Variables whose names contain these are not weight-decayed (biases and norm scales).
NO_DECAY_NAMES = ("bias", "gamma", "beta", "scale")


class _NamedDecayExclusions:
    """Optimizer mixin for `exclude_from_weight_decay(var_names=...)`:

    * the names are matched against variable *paths* (Keras matches bare variable names),
      as the reference's recipes match full parameter names: mT5's relative attention
      bias, a variable named `embeddings`, is not decayed;
    * they survive `get_config` (Keras leaves them out, so a run resumed from a `.keras`
      file would start decaying biases and norm scales).

    Excluded variable objects (`var_list=`) cannot be saved by name and are refused.
    """

    def _init_exclusions(self, names):
        self._excluded_names = []
        if names:
            self.exclude_from_weight_decay(var_names=names)

    def exclude_from_weight_decay(self, var_list=None, var_names=None):
        if var_list:
            raise ValueError(
                f"tfmodels {type(self).__name__} excludes variables by name only "
                "(var_names=...), so that a saved optimizer keeps the exclusion"
            )
        super().exclude_from_weight_decay(var_names=var_names)
        self._excluded_names = list(var_names or [])

    def _use_weight_decay(self, variable):
        # The pattern Keras compiled from the names, matched against the whole path.
        pattern = getattr(self, "_exclude_from_weight_decay_pattern", None)
        if pattern is not None and pattern.search(getattr(variable, "path", None) or variable.name):
            return False
        return super()._use_weight_decay(variable)

    def get_config(self):
        config = super().get_config()
        config["exclude_from_weight_decay_names"] = list(self._excluded_names)
        return config


@keras.saving.register_keras_serializable(package="tfmodels")
class AdamW(_NamedDecayExclusions, keras.optimizers.AdamW):
    """`torch.optim.AdamW`'s update, with `_NamedDecayExclusions`.

    Keras' Adam folds both bias corrections into the step size, which divides by
    `sqrt(v) + epsilon` instead of torch's `sqrt(v_hat) + epsilon`: its epsilon acts
    `1 / sqrt(1 - beta_2**t)` times larger (7x at step 1 with `beta_2=0.98`, still 1.1x
    at step 100), so early updates of small-gradient weights come out several times
    smaller than the reference recipes'. Here the update is torch's:
    `lr * m_hat / (sqrt(v_hat) + epsilon)`, decoupled weight decay `lr * weight_decay * p`.

    Example:
    >>> optimizer = AdamW(learning_rate=1e-4, weight_decay=0.01)
    >>> optimizer.exclude_from_weight_decay(var_names=["bias", "gamma"])
    >>> restored = AdamW.from_config(optimizer.get_config())
    >>> restored.get_config()["exclude_from_weight_decay_names"]
    ['bias', 'gamma']
    """

    def __init__(self, *args, exclude_from_weight_decay_names=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_exclusions(exclude_from_weight_decay_names)

    def update_step(self, gradient, variable, learning_rate):
        ops = keras.ops
        dtype = variable.dtype
        index = self._get_variable_index(variable)
        gradient = ops.cast(gradient, dtype)
        step = ops.cast(self.iterations + 1, dtype)
        first, second = self._momentums[index], self._velocities[index]
        self.assign_add(first, ops.multiply(ops.subtract(gradient, first), 1 - self.beta_1))
        self.assign_add(second, ops.multiply(ops.subtract(ops.square(gradient), second),
                                             1 - self.beta_2))
        if self.amsgrad:  # torch's: the running maximum of the raw second moment
            largest = self._velocity_hats[index]
            self.assign(largest, ops.maximum(largest, second))
            second = largest
        first_hat = ops.divide(first, 1 - ops.power(ops.cast(self.beta_1, dtype), step))
        second_hat = ops.divide(second, 1 - ops.power(ops.cast(self.beta_2, dtype), step))
        self.assign_sub(variable, ops.divide(
            ops.multiply(first_hat, ops.cast(learning_rate, dtype)),
            ops.add(ops.sqrt(second_hat), self.epsilon)))


@keras.saving.register_keras_serializable(package="tfmodels")
class Adafactor(_NamedDecayExclusions, keras.optimizers.Optimizer):
    """Adafactor (Shazeer & Stern, 2018) with the reference's options.

    For a parameter `p` with gradient `g` at step `t` (1-based):

    * step size `rho = learning_rate` (default 1e-3), or with `relative_step` (which
      refuses a `learning_rate`)
      `min(1e-6 * t if warmup_init else 1e-2, 1/sqrt(t))`; with `scale_parameter` it is
      multiplied by `max(epsilon_2, RMS(p))`;
    * `beta2_t = 1 - t ** decay_rate`; second moments of `g**2 + epsilon_1` are kept
      factored (row and column means) for rank >= 2 parameters, in full otherwise;
    * `u = g / sqrt(v_hat)`, clipped to `RMS(u) <= clip_threshold`, times `rho`;
      with `beta_1`, `u` becomes its exponential moving average;
    * `p <- p - weight_decay * rho * p - u`.

    Example:
    >>> import keras
    >>> optimizer = Adafactor(learning_rate=1e-3)   # the T5 fine-tuning recipe
    >>> variable = keras.Variable([[1.0, 2.0], [3.0, 4.0]])
    >>> optimizer.apply([keras.ops.ones((2, 2))], [variable])
    >>> [round(float(x), 4) for x in variable.numpy().ravel()]
    [0.999, 1.999, 2.999, 3.999]
    """

    def __init__(
        self,
        learning_rate=None,
        beta_1=None,
        decay_rate=-0.8,
        epsilon_1=1e-30,
        epsilon_2=1e-3,
        clip_threshold=1.0,
        relative_step=False,
        scale_parameter=False,
        warmup_init=False,
        weight_decay=0.0,
        exclude_from_weight_decay_names=None,
        name="adafactor",
        **kwargs,
    ):
        if warmup_init and not relative_step:
            raise ValueError("Adafactor: warmup_init=True requires relative_step=True")
        if relative_step and learning_rate is not None:
            raise ValueError("Adafactor: relative_step=True computes the step size; leave "
                             "learning_rate out (the reference refuses both too)")
        # Weight decay is applied inside `update_step` (scaled by the relative step, as
        # in the reference), so the base class's generic decay stays off.
        if learning_rate is None:  # 1e-3: the T5 fine-tuning recipe's constant step
            learning_rate = 0.0 if relative_step else 1e-3
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self._init_exclusions(exclude_from_weight_decay_names)
        self.beta_1 = beta_1
        self.decay_rate = decay_rate
        self.epsilon_1 = epsilon_1
        self.epsilon_2 = epsilon_2
        self.clip_threshold = clip_threshold
        self.relative_step = relative_step
        self.scale_parameter = scale_parameter
        self.warmup_init = warmup_init
        self.adafactor_weight_decay = float(weight_decay or 0.0)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._row_moments, self._col_moments, self._moments, self._momenta = [], [], [], []
        for variable in var_list:
            dtype = _state_dtype(variable)
            shape = tuple(variable.shape)
            base = getattr(variable, "path", variable.name).replace("/", "_")
            factored = len(shape) >= 2
            # Placeholders keep the four lists aligned with `_get_variable_index`.
            self._row_moments.append(
                self.add_variable(shape[:-1], dtype=dtype, name=f"{base}_row")
                if factored else None
            )
            self._col_moments.append(
                self.add_variable(shape[:-2] + shape[-1:], dtype=dtype, name=f"{base}_col")
                if factored else None
            )
            self._moments.append(
                None if factored else self.add_variable(shape, dtype=dtype, name=f"{base}_v")
            )
            self._momenta.append(
                self.add_variable(shape, dtype=dtype, name=f"{base}_m")
                if self.beta_1 is not None else None
            )

    @staticmethod
    def _rms(tensor):
        return tf.sqrt(tf.reduce_mean(tf.square(tensor)))

    def _step_size(self, learning_rate, param, step):
        dtype = param.dtype
        if self.relative_step:
            cap = 1e-6 * step if self.warmup_init else tf.constant(1e-2, dtype)
            rho = tf.minimum(cap, tf.math.rsqrt(step))
        else:
            rho = tf.cast(learning_rate, dtype)
        if self.scale_parameter:
            rho = rho * tf.maximum(tf.constant(self.epsilon_2, dtype), self._rms(param))
        return rho

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        # Statistics in float32 (float64 for float64 variables) whatever the variable's
        # dtype: the reference upcasts half-precision parameters too.
        dtype = tf.as_dtype(_state_dtype(variable))
        grad = tf.cast(tf.convert_to_tensor(gradient), dtype)
        param = tf.cast(tf.convert_to_tensor(variable), dtype)
        step = tf.cast(self.iterations + 1, dtype)
        rho = self._step_size(learning_rate, param, step)
        beta2 = 1.0 - tf.pow(step, tf.constant(self.decay_rate, dtype))
        squared = tf.square(grad) + tf.constant(self.epsilon_1, dtype)

        row, col = self._row_moments[index], self._col_moments[index]
        if row is not None:
            new_row = beta2 * row + (1.0 - beta2) * tf.reduce_mean(squared, axis=-1)
            new_col = beta2 * col + (1.0 - beta2) * tf.reduce_mean(squared, axis=-2)
            self.assign(row, new_row)
            self.assign(col, new_col)
            # v_hat = outer(row, col) / mean(row): the rank-1 reconstruction of E[g^2].
            row_factor = tf.math.rsqrt(new_row / tf.reduce_mean(new_row, axis=-1, keepdims=True))
            col_factor = tf.math.rsqrt(new_col)
            update = grad * row_factor[..., :, tf.newaxis] * col_factor[..., tf.newaxis, :]
        else:
            moment = self._moments[index]
            new_moment = beta2 * moment + (1.0 - beta2) * squared
            self.assign(moment, new_moment)
            update = grad * tf.math.rsqrt(new_moment)

        clip = tf.constant(self.clip_threshold, dtype)
        update = update / tf.maximum(tf.constant(1.0, dtype), self._rms(update) / clip)
        update = update * rho
        momentum = self._momenta[index]
        if momentum is not None:
            beta_1 = tf.constant(self.beta_1, dtype)
            update = beta_1 * momentum + (1.0 - beta_1) * update
            self.assign(momentum, update)
        if self.adafactor_weight_decay and self._use_weight_decay(variable):
            update = update + tf.constant(self.adafactor_weight_decay, dtype) * rho * param
        self.assign_sub(variable, tf.cast(update, variable.dtype))

    def get_config(self):
        config = super().get_config()
        if self.relative_step:
            config["learning_rate"] = None  # unused, and refused with relative_step
        config.update(
            beta_1=self.beta_1,
            decay_rate=self.decay_rate,
            epsilon_1=self.epsilon_1,
            epsilon_2=self.epsilon_2,
            clip_threshold=self.clip_threshold,
            relative_step=self.relative_step,
            scale_parameter=self.scale_parameter,
            warmup_init=self.warmup_init,
            weight_decay=self.adafactor_weight_decay,
        )
        return config


def _state_dtype(variable):
    return "float64" if str(variable.dtype) in ("float64", "<dtype: 'float64'>") else "float32"


def default_optimizer_name(model_type):
    """`"adafactor"` for the T5 family (its standard), `"adamw"` otherwise (fairseq's)."""
    return "adafactor" if model_type in ("mt5", "t5") else "adamw"


def get_optimizer(optimizer="auto", model_type=None, learning_rate=None):
    """Resolves `compile(optimizer=...)`: an instance is returned as is; names build one.

    * `"auto"`: the family default (see `default_optimizer_name`);
    * `"adafactor"`: `Adafactor(learning_rate or 1e-3)` — the T5 recipe (module docstring);
    * `"adamw"`: `AdamW(learning_rate or 5e-5, weight_decay=0.01,
      beta_2=0.98, epsilon=1e-6)`, biases and norm scales not decayed;
    * any other Keras optimizer name, with `learning_rate` applied when given.

    Example:
    >>> get_optimizer("auto", model_type="mt5").__class__.__name__
    'Adafactor'
    >>> round(float(get_optimizer("adamw", learning_rate=1e-4).learning_rate), 8)
    0.0001
    """
    if not isinstance(optimizer, str):
        if learning_rate is not None:
            raise ValueError("learning_rate= applies to optimizer names only; set it on "
                             "the optimizer instance you pass")
        return optimizer
    name = optimizer.lower()
    if name == "auto":
        name = default_optimizer_name(model_type)
    if name == "adafactor":
        return Adafactor(learning_rate=1e-3 if learning_rate is None else learning_rate)
    if name == "adamw":
        return AdamW(
            learning_rate=5e-5 if learning_rate is None else learning_rate,
            weight_decay=0.01,
            beta_1=0.9,
            beta_2=0.98,
            epsilon=1e-6,
            exclude_from_weight_decay_names=list(NO_DECAY_NAMES),
        )
    resolved = keras.optimizers.get(name)
    if learning_rate is not None:
        resolved.learning_rate = learning_rate
    return resolved
