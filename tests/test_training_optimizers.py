"""Our Adafactor against transformers' (the T5 reference) step by step; optimizer defaults."""

import keras
import numpy as np
import pytest

from tfmodels.training import Adafactor, AdamW, get_optimizer

SHAPES = [(6, 5), (5,), (3, 4, 2)]
CONFIGS = {
    # The T5 fine-tuning recipe (our default): constant step, no parameter scaling.
    "t5_finetune": dict(lr=1e-3, relative_step=False, scale_parameter=False),
    # The reference's defaults: relative step, parameter scaling.
    "relative": dict(lr=None, relative_step=True, scale_parameter=True),
    "warmup_momentum_decay": dict(lr=None, relative_step=True, scale_parameter=True,
                                  warmup_init=True, beta1=0.9, weight_decay=0.01),
    "clip_small": dict(lr=3e-2, relative_step=False, scale_parameter=True, clip_threshold=0.5,
                       decay_rate=-0.5),
}


def run_reference(torch, transformers, config, params, grads):
    tensors = [torch.nn.Parameter(torch.from_numpy(p.copy())) for p in params]
    optimizer = transformers.optimization.Adafactor(tensors, **config)
    for step_grads in grads:
        for tensor, grad in zip(tensors, step_grads):
            tensor.grad = torch.from_numpy(grad.copy())
        optimizer.step()
    return [t.detach().numpy() for t in tensors]


def ours_kwargs(config):
    mapping = dict(lr="learning_rate", beta1="beta_1")
    return {mapping.get(key, key): value for key, value in config.items()}


@pytest.mark.torch
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_adafactor_matches_transformers(torch, transformers, name, report_figure):
    rng = np.random.RandomState(0)
    # float64 on both sides: float32 rounding would hide small-step differences (the
    # warm-up steps are ~1e-6 of the parameters).
    params = [rng.randn(*shape) for shape in SHAPES]
    grads = [[rng.randn(*shape) * scale for shape in SHAPES]
             for scale in (1.0, 0.1, 3.0, 0.01, 1.0)]
    expected = run_reference(torch, transformers, CONFIGS[name], params, grads)

    variables = [keras.Variable(p, dtype="float64") for p in params]
    optimizer = Adafactor(**ours_kwargs(CONFIGS[name]))
    for step_grads in grads:
        optimizer.apply([keras.ops.convert_to_tensor(g, "float64") for g in step_grads], variables)
    worst = 0.0
    for variable, start, reference in zip(variables, params, expected):
        moved = np.max(np.abs(reference - start))
        difference = np.max(np.abs(variable.numpy() - reference))
        # 1e-7: Keras keeps the learning rate in a float32 variable (1e-3 -> 1e-3 * (1 + 3e-8)).
        assert difference <= 1e-7 * moved, (name, difference, moved)
        worst = max(worst, difference / moved)
    report_figure(f"Adafactor[{name}] vs transformers after 5 steps", worst_rel_of_update=worst)


def test_adafactor_config_round_trip():
    optimizer = Adafactor(learning_rate=1e-3, beta_1=0.9, weight_decay=0.01)
    clone = Adafactor.from_config(optimizer.get_config())
    assert clone.beta_1 == 0.9 and clone.adafactor_weight_decay == 0.01
    assert clone.relative_step is False and clone.scale_parameter is False


def test_warmup_init_needs_relative_step():
    with pytest.raises(ValueError, match="warmup_init"):
        Adafactor(warmup_init=True)


def test_family_default_optimizers():
    adafactor = get_optimizer("auto", model_type="mt5")
    assert isinstance(adafactor, Adafactor)
    assert float(adafactor.learning_rate) == pytest.approx(1e-3)
    assert not adafactor.relative_step and not adafactor.scale_parameter
    adamw = get_optimizer("auto", model_type="m2m_100", learning_rate=1e-4)
    assert isinstance(adamw, keras.optimizers.AdamW)
    assert float(adamw.learning_rate) == pytest.approx(1e-4)
    assert adamw.beta_2 == 0.98 and adamw.weight_decay == 0.01
    with pytest.raises(ValueError, match="learning_rate"):
        get_optimizer(keras.optimizers.SGD(), learning_rate=0.1)


@pytest.mark.torch
@pytest.mark.parametrize("amsgrad", [False, True])
def test_adamw_matches_torch_adamw(torch, amsgrad):
    """The update of `torch.optim.AdamW`, small gradients included (where Keras' Adam,
    whose epsilon acts 1/sqrt(1 - beta_2**t) times larger, moves weights several times
    less in the first steps)."""
    rng = np.random.RandomState(0)
    shapes = [(3, 4), (5,)]
    initial = [rng.randn(*shape) for shape in shapes]
    grads = [[rng.randn(*shape) * scale for shape in shapes] for scale in (1e-6, 1e-5, 1e-4, 1e-2, 1.0)]
    settings = dict(weight_decay=0.01, eps=1e-6, betas=(0.9, 0.98), amsgrad=amsgrad)
    tensors = [torch.tensor(value, requires_grad=True) for value in initial]
    reference = torch.optim.AdamW(tensors, lr=1e-2, **settings)
    for step_grads in grads:
        for tensor, grad in zip(tensors, step_grads):
            tensor.grad = torch.from_numpy(grad.copy())
        reference.step()
    expected = [t.detach().numpy() for t in tensors]

    keras.backend.set_floatx("float64")
    try:
        variables = [keras.Variable(value, dtype="float64") for value in initial]
        ours = AdamW(learning_rate=1e-2, weight_decay=0.01, epsilon=1e-6, beta_1=0.9,
                     beta_2=0.98, amsgrad=amsgrad)
        for step_grads in grads:
            ours.apply([keras.ops.convert_to_tensor(g) for g in step_grads], variables)
    finally:
        keras.backend.set_floatx("float32")
    for variable, start, want in zip(variables, initial, expected):
        moved, wanted = np.asarray(variable) - start, want - start
        np.testing.assert_allclose(moved, wanted, rtol=1e-5, atol=1e-12)  # lr is float32


def test_weight_decay_exclusions_match_paths_and_survive_the_config():
    """Names are matched against variable paths (mT5's relative attention bias, a variable
    named `embeddings`, is a bias as in the reference's recipes) and kept by `get_config`
    (Adafactor as AdamW)."""
    from test_training_support import small_model

    model = small_model("mt5")
    adamw = get_optimizer("adamw")
    relative_bias = [v for v in model.trainable_variables if "relative_position_bias" in v.path]
    assert relative_bias and not any(adamw._use_weight_decay(v) for v in relative_bias)
    assert adamw._use_weight_decay(model.lm_head.kernel)
    adafactor = Adafactor(weight_decay=0.01)
    adafactor.exclude_from_weight_decay(var_names=["bias"])
    for optimizer in (adamw, adafactor):
        clone = type(optimizer).from_config(optimizer.get_config())
        assert clone.get_config()["exclude_from_weight_decay_names"] == optimizer._excluded_names
        assert not any(clone._use_weight_decay(v) for v in relative_bias)
    with pytest.raises(ValueError, match="excludes variables by name only"):
        adafactor.exclude_from_weight_decay(var_list=relative_bias)


def test_adafactor_refuses_a_learning_rate_with_relative_step():
    with pytest.raises(ValueError, match="relative_step=True computes the step size"):
        Adafactor(learning_rate=1e-5, relative_step=True)
    relative = Adafactor(relative_step=True, scale_parameter=True)
    assert Adafactor.from_config(relative.get_config()).relative_step
    assert float(Adafactor().learning_rate) == pytest.approx(1e-3)
