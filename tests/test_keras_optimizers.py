"""Keras 3's optimizers by name or class: the History and final weights Keras gives, compiled as eager,
and clear errors for bad arguments.

The expected numbers are Keras 3.15.1's (torch backend), printed by `keras_reference/optimizers.py`
for each case of `keras_parity.OPTIMIZER_CASES`: a 3-2-1 tanh MLP, `loss="mse"`, 24 samples in
unshuffled batches of 8, 3 epochs, the learning rate halved after the first epoch and again after the
second (momentum kept with the old rate shows there). Keras computes its bias corrections in float32,
epochal in float64: they agree to about 2e-6.
"""

import copy
import doctest
import importlib
import warnings

import pytest
import torch
from torch._dynamo.utils import counters

import epochal
import epochal.step.compiled
from epochal.callbacks import LearningRateScheduler
from keras_parity import OPTIMIZER_BATCH, OPTIMIZER_CASES, OPTIMIZER_EPOCHS, optimizer_data, optimizer_schedule

KERAS = {  # case: (History's loss per epoch, final weights in torch's layout)
    'sgd': ([1.26808107, 1.17054319, 1.12730253], [-1.09659171, -1.0363822, 0.86961621, -0.33920851, -0.51306212, -0.3856838, -0.07997866, -0.10697028, 0.55313843, -1.70687056, -0.16956553]),
    'sgd momentum': ([1.24770868, 0.58761352, 0.69028312], [-1.14501357, -1.36183107, 0.66242331, -0.88617629, -0.0961685, 1.4655273, -0.0783729, -0.15012893, 0.81318802, -0.36845312, -0.17290516]),
    'sgd nesterov decay': ([1.30120981, 0.60855877, 0.63566017], [-1.14691401, -1.27016449, 0.68717802, -1.06634259, -0.10023513, 1.29510474, -0.0720434, -0.30657914, 0.68285793, -0.26969776, -0.12537055]),
    'adam': ([1.28585005, 1.27553022, 1.27106154], [-1.09747422, -1.02670896, 0.87770081, -0.31610537, -0.52972484, -0.46193817, -0.07722542, -0.10090734, 0.55779344, -1.73794067, -0.16998848]),
    'adam amsgrad': ([1.23478734, 0.92952567, 0.83040309], [-1.09170699, -1.16279233, 0.74780846, -0.41789362, -0.40576777, -0.26820886, -0.07356089, -0.15889925, 0.5104804, -1.54144859, -0.12496148]),
    'adamw': ([1.28584075, 1.2755003, 1.27102137], [-1.09745085, -1.0266875, 0.87768221, -0.31609875, -0.52971357, -0.46192834, -0.07722376, -0.10090522, 0.5577817, -1.73790383, -0.16998486]),
    'rmsprop': ([1.2831763, 1.26298928, 1.25627172], [-1.0967387, -1.03206885, 0.87360287, -0.31663537, -0.52741235, -0.45751399, -0.07563293, -0.10283269, 0.55597645, -1.73233676, -0.17020157]),
    'rmsprop centered momentum': ([1.24772537, 0.95820349, 0.85115772], [-1.08464003, -1.17797732, 0.75579071, -0.36650965, -0.4282586, -0.29014963, -0.08849793, -0.15302151, 0.51932007, -1.5375073, -0.15816581]),
    'rmsprop decay': ([1.2510879, 1.07470977, 1.0241679], [-1.07762957, -1.1160233, 0.79658538, -0.33981991, -0.47675028, -0.37886426, -0.05226232, -0.13095574, 0.52790868, -1.63097441, -0.16362479]),
    'adagrad': ([1.28643572, 1.28051054, 1.27857542], [-1.09714663, -1.02407968, 0.88015276, -0.31413648, -0.53172964, -0.46382442, -0.07898985, -0.09911368, 0.5595088, -1.73996067, -0.17172779]),
    'adagrad decay': ([1.20456111, 0.85007972, 0.76747155], [-1.03667819, -1.0971185, 0.73188388, -0.35185218, -0.39760339, -0.2278102, -0.09187862, -0.1107645, 0.5130713, -1.43422687, -0.16390869]),
    'adadelta': ([1.28789556, 1.28788388, 1.28787816], [-1.09739971, -1.02150738, 0.88233185, -0.31297463, -0.53353429, -0.46653074, -0.07906137, -0.09763084, 0.56089485, -1.74303472, -0.1724357]),
    'adadelta fast': ([1.21127617, 0.83354586, 0.70506334], [-1.06715918, -1.34562349, 0.6715458, -0.34200931, -0.39874104, -0.16835026, -0.08311874, -0.11674246, 0.53841764, -1.33538735, -0.2039618]),
    'adadelta decay': ([1.09852517, 0.80910188, 0.7339313], [-0.63454497, -0.59628183, 0.50790381, -0.18240359, -0.3066991, -0.26703018, -0.04474745, -0.05792145, 0.32339218, -1.00555432, -0.09927224]),
    'adamax': ([1.28598416, 1.27738702, 1.27400982], [-1.09770429, -1.02626538, 0.87855196, -0.31537279, -0.5301168, -0.46289754, -0.07742751, -0.10055146, 0.55839622, -1.73893893, -0.17031609]),
    'adamax fast': ([1.23804271, 0.92051244, 0.83921498], [-1.109483, -1.2085433, 0.72724366, -0.40444577, -0.38905022, -0.29051501, -0.02429484, -0.1698236, 0.49699053, -1.54211438, -0.12075895]),
    'nadam': ([1.28622484, 1.27876866, 1.27553093], [-1.09715426, -1.02564085, 0.87885374, -0.31464094, -0.53103793, -0.46295419, -0.07785455, -0.09975302, 0.55881584, -1.73886955, -0.17138053]),
    'nadam fast': ([1.23750222, 0.95776349, 0.87053436], [-1.07057238, -1.19492376, 0.73229229, -0.3649084, -0.43400919, -0.30309185, -0.05373386, -0.13903275, 0.52095854, -1.5429312, -0.16424043]),
    'lion': ([1.28583753, 1.27666831, 1.27210712], [-1.09565091, -1.02674997, 0.87708735, -0.31522292, -0.53178793, -0.46128651, -0.07731237, -0.09937795, 0.55914772, -1.73779225, -0.17068671]),
    'lion decay': ([1.25523698, 1.1583581, 1.11346912], [-1.05148196, -1.04689848, 0.8075217, -0.28741521, -0.50251466, -0.40251374, -0.05983566, -0.11226837, 0.52903426, -1.64588571, -0.15078631]),
    'adafactor': ([1.28589225, 1.27900636, 1.27555585], [-1.09693325, -1.02883434, 0.87978286, -0.31374547, -0.53181171, -0.46375188, -0.07897694, -0.0978072, 0.55810058, -1.73651564, -0.17231435]),
    'adafactor fast': ([1.20770526, 0.9412486, 0.83784789], [-1.04861856, -1.38089001, 0.75567979, -0.33235371, -0.44461197, -0.31852493, -0.07387864, -0.10749751, 0.50707322, -1.42412913, -0.16202526]),
    'adafactor decay': ([1.15336001, 0.77233487, 0.67420894], [-0.98796648, -1.44672, 0.66076821, -0.31785673, -0.41289344, -0.20112157, -0.06509563, -0.10566462, 0.48003525, -1.19398558, -0.15311496]),
    'ftrl': ([1.01052368, 0.67578602, 0.59675574], [-0.00805146, -0.08129827, 0.09112095, -0.07274729, -0.08464617, -0.10561131, -0.00043231, -0.01429063, 0.07481682, -0.27104044, -0.03540866]),
    'ftrl regularised': ([1.05170047, 0.618931, 0.57766628], [-0.0138555, -0.10864845, 0.04295146, -0.08891643, -0.04715529, -0.08283642, -0.00175649, -0.02764632, 0.05668902, -0.21613388, -0.02275002]),
    'ftrl decay': ([1.04188073, 0.61085945, 0.57617515], [-0.02101974, -0.11461893, 0.0501594, -0.08981964, -0.0408999, -0.06615685, -0.00255621, -0.02738804, 0.0572429, -0.20645556, -0.02124714]),
    'lamb': ([1.28512824, 1.27470028, 1.26954615], [-1.09719551, -1.02673995, 0.87770116, -0.3159925, -0.5298087, -0.46193814, -0.07894528, -0.09819332, 0.5560835, -1.73485839, -0.17153344]),
    'lamb decay': ([1.17228425, 0.816957, 0.70753288], [-1.06128001, -1.26178658, 0.63468659, -0.4238691, -0.35545623, -0.22100651, -0.07414214, -0.12187972, 0.44911173, -1.31140256, -0.15312523]),
}


def _optimizer(case):
    """The `compile(optimizer=...)` argument of `case`: its name, or its class built with its Keras arguments."""
    spec = dict(OPTIMIZER_CASES)[case]
    if isinstance(spec, str):
        return spec
    name, arguments = spec
    return lambda params: getattr(epochal.optimizers, name)(params, **arguments)


def _fit(case, x, y, module, **options):
    model = epochal.Model(module, device="cpu")
    model.compile(optimizer=_optimizer(case), loss="mse", **options)
    model.fit(x, y, epochs=OPTIMIZER_EPOCHS, batch_size=OPTIMIZER_BATCH, shuffle=False, verbose=0,
              callbacks=[LearningRateScheduler(optimizer_schedule)])
    return model


def _mlp():
    x, y, weights = optimizer_data()
    module = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Tanh(), torch.nn.Linear(2, 1))
    with torch.no_grad():
        for parameter, value in zip(module.parameters(), weights):
            parameter.copy_(torch.from_numpy(value))
    return torch.from_numpy(x), torch.from_numpy(y), module


@pytest.mark.parametrize("case", list(KERAS))
def test_history_and_final_weights_are_keras_3s(case):
    x, y, module = _mlp()
    model = _fit(case, x, y, module)
    losses, weights = KERAS[case]
    assert model.history.history["loss"] == pytest.approx(losses, abs=5e-6)
    assert torch.cat([p.detach().reshape(-1) for p in module.parameters()]).tolist() == pytest.approx(weights, abs=5e-6)


COMPILED = ["sgd", "sgd nesterov decay", "adam", "adam amsgrad", "adamw", "rmsprop", "rmsprop centered momentum",
            "rmsprop decay", "adagrad", "adadelta", "adadelta decay", "adamax", "nadam", "lion", "adafactor",
            "adafactor decay", "lamb"]


@pytest.mark.parametrize("case", COMPILED)
def test_the_compiled_step_reaches_the_eager_weights_and_optimizer_state(monkeypatch, case):
    """One graph (aot_eager: dynamo and functionalisation without inductor's code generation), no fallback."""
    monkeypatch.setitem(epochal.step.compiled._COMPILE, "backend", "aot_eager")
    torch._dynamo.reset()
    counters.clear()
    x, y, module = _mlp()
    eager = _fit(case, x, y, copy.deepcopy(module))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fallback to eager warns
        compiled = _fit(case, x, y, module, jit_compile=True)
    assert counters["stats"]["unique_graphs"] == 1
    for ours, theirs in zip(compiled.module.parameters(), eager.module.parameters()):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    state, reference = compiled.optimizer.state_dict()["state"], eager.optimizer.state_dict()["state"]
    assert state.keys() == reference.keys()
    for index, tensors in reference.items():
        assert state[index].keys() == tensors.keys()
        for key, value in tensors.items():
            torch.testing.assert_close(state[index][key], value, rtol=1e-5, atol=1e-6)
    torch._dynamo.reset()


def test_ftrl_has_no_compiled_form_and_runs_eagerly_after_one_warning():
    x, y, module = _mlp()
    with pytest.warns(UserWarning, match="run eagerly because its optimizer Ftrl has no compiled update"):
        model = _fit("ftrl", x, y, module, jit_compile=True)
    assert model.history.history["loss"] == pytest.approx(KERAS["ftrl"][0], abs=5e-6)


def test_a_restored_state_dict_continues_exactly():
    """The state is torch's layout (`step` on the host, slots shaped like the parameters): saved, loaded
    into a fresh optimizer, the next steps are the same bits as the original's."""
    x, y, module = _mlp()
    original = epochal.optimizers.Nadam(module.parameters(), learning_rate=0.05)
    for _ in range(2):
        original.zero_grad()
        torch.nn.functional.mse_loss(module(x), y).backward()
        original.step()
    copy_module = copy.deepcopy(module)
    restored = epochal.optimizers.Nadam(copy_module.parameters())
    restored.load_state_dict(copy.deepcopy(original.state_dict()))
    assert restored.param_groups[0]["lr"] == 0.05 and restored.state[copy_module[0].weight]["step"].item() == 2
    for net, optimizer in ((module, original), (copy_module, restored)):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(net(x), y).backward()
        optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(module.parameters(), copy_module.parameters()))


def test_a_parameter_that_misses_a_gradient_keeps_its_own_step_count():
    """As torch's optimizers (Keras counts the optimizer's steps instead): a skipped parameter is not
    updated, and its bias corrections continue from its own count."""
    first, second = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    optimizer = epochal.optimizers.Adam([first, second], learning_rate=0.1)
    first.grad, second.grad = torch.ones(2), None
    optimizer.step()
    second.grad = torch.ones(2)
    optimizer.step()
    assert [optimizer.state[p]["step"].item() for p in (first, second)] == [2.0, 1.0]
    # Adam's first step moves by lr * g / (|g| + eps): 0.1 for the second parameter, from 1.0.
    assert second.tolist() == pytest.approx([0.9, 0.9], abs=1e-6)


def test_torch_schedulers_that_cycle_beta_1_drive_the_adam_family():
    """`beta_1` and `beta_2` live in torch's `betas` pair, which `OneCycleLR(cycle_momentum=True)` cycles."""
    x, y, module = _mlp()
    model = epochal.Model(module, device="cpu")
    model.compile(optimizer="nadam", loss="mse")
    one_cycle = torch.optim.lr_scheduler.OneCycleLR(model.optimizer, max_lr=0.05, total_steps=9)
    model.fit(x, y, epochs=3, batch_size=8, verbose=0, callbacks=[LearningRateScheduler(one_cycle, per="batch")])
    beta_1, beta_2 = model.optimizer.param_groups[0]["betas"]
    assert 0.85 < beta_1 < 0.95 and beta_2 == 0.999  # cycled between OneCycleLR's momenta (Keras's default: 0.9)
    assert beta_1 != pytest.approx(0.9, abs=1e-3)
    assert model.history.history["loss"][-1] < model.history.history["loss"][0]


@pytest.mark.parametrize("build, error, message", [
    (lambda p: epochal.optimizers.SGD(p, learning_rate=-0.1), ValueError,
     r"`learning_rate` must be a finite number >= 0. Received: learning_rate=-0.1"),
    (lambda p: epochal.optimizers.SGD(p, learning_rate="0.1"), TypeError,
     r"`learning_rate` must be a number. Received: learning_rate='0.1'"),
    (lambda p: epochal.optimizers.SGD(p, momentum=1.5), ValueError,
     r"`momentum` must be in \[0, 1\]. Received: momentum=1.5"),
    (lambda p: epochal.optimizers.SGD(p, nesterov=1), TypeError,
     r"`nesterov` must be True or False. Received: nesterov=1"),
    (lambda p: epochal.optimizers.Adam(p, beta_2=1.0), ValueError, r"`beta_2` must be in \[0, 1\). Received: beta_2=1.0"),
    (lambda p: epochal.optimizers.Adam(p, epsilon=float("nan")), ValueError, r"`epsilon` must be a finite number"),
    (lambda p: epochal.optimizers.AdamW(p, weight_decay=None), ValueError,
     r"AdamW needs a `weight_decay` \(a number >= 0\). Received: weight_decay=None"),
    (lambda p: epochal.optimizers.RMSprop(p, weight_decay=-1), ValueError,
     r"`weight_decay` must be a finite number >= 0. Received: weight_decay=-1"),
    (lambda p: epochal.optimizers.Lion(p, beta_1=0.0), ValueError, r"`beta_1` must be in \(0, 1\]. Received: beta_1=0.0"),
    (lambda p: epochal.optimizers.Adafactor(p, clip_threshold=0), ValueError,
     r"`clip_threshold` must be a finite number > 0. Received: clip_threshold=0"),
    (lambda p: epochal.optimizers.Adafactor(p, beta_2_decay=0.5), ValueError, r"`beta_2_decay` must be in \[-inf, 0\]"),
    (lambda p: epochal.optimizers.Ftrl(p, learning_rate=0.0), ValueError,
     r"`learning_rate` must be a finite number > 0. Received: learning_rate=0.0"),
    (lambda p: epochal.optimizers.Ftrl(p, learning_rate_power=0.5), ValueError, r"`learning_rate_power` must be in"),
    (lambda p: epochal.optimizers.Adagrad(p, initial_accumulator_value=-0.1), ValueError,
     r"`initial_accumulator_value` must be a finite number >= 0"),
])
def test_bad_arguments_are_clear_errors_naming_them(build, error, message):
    with pytest.raises(error, match=message):
        build(torch.nn.Linear(2, 1).parameters())


def test_an_unknown_name_lists_the_known_ones():
    model = epochal.Model(torch.nn.Linear(2, 1), device="cpu")
    with pytest.raises(ValueError, match=r"Unknown optimizer: 'adamm'. Known optimizers: sgd, adam, .*, ftrl, lamb"):
        model.compile(optimizer="adamm", loss="mse")


@pytest.mark.parametrize("module", ["sgd", "adam", "rmsprop", "nadam"])
def test_docstring_examples_run(module):
    assert doctest.testmod(importlib.import_module(f"epochal.optimizers.{module}")).failed == 0
