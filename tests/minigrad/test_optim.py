"""minigrad.optim: every update rule against a plain NumPy re-derivation,
dtypes, state dicts, parameter groups, clipping and schedules."""

import json
import math
import warnings

import numpy as np
import pytest

import minigrad as mg
from minigrad import backend, nn, optim


def _tol(dtype) -> dict:
    """Comparison with a float64 reference: eps^(2/3) (float64 4e-11, float32 2.4e-5)."""
    eps = float(np.finfo(np.dtype(dtype)).eps)
    return {"rtol": eps ** (2 / 3), "atol": eps ** (2 / 3)}


# The objective every test minimises: f(p) = Σ ½ c p² + a p + ¼ p⁴ (non-quadratic,
# so the gradient c p + a + p³ changes from step to step).
def _problem(shape=(3, 4), seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=shape), rng.uniform(0.5, 2.0, size=shape), rng.normal(size=shape))


def _grad_ref(p, c, a):
    return c * p + a + p ** 3


def _loss(p, c, a):
    return (c * p * p * 0.5 + a * p + p * p * p * p * 0.25).sum()


def _run(make_opt, p0, c, a, steps, device="cpu", dtype=mg.float64):
    p = nn.Parameter(mg.tensor(p0, dtype=dtype, device=device))
    cc, aa = mg.tensor(c, dtype=dtype, device=device), mg.tensor(a, dtype=dtype, device=device)
    opt = make_opt([p])
    for _ in range(steps):
        opt.zero_grad()
        _loss(p, cc, aa).backward()
        opt.step()
    return p, opt


# --------------------------------------------------------------------------- NumPy references

def _sgd_ref(p, c, a, steps, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
    buf = None
    for _ in range(steps):
        g = _grad_ref(p, c, a) + weight_decay * p
        if momentum:
            buf = g.copy() if buf is None else momentum * buf + (1 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        p = p - lr * g
    return p


def _adam_ref(p, c, a, steps, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
              decoupled=False):
    m, v = np.zeros_like(p), np.zeros_like(p)
    for t in range(1, steps + 1):
        g = _grad_ref(p, c, a)
        if decoupled:
            p = p - lr * weight_decay * p
        else:
            g = g + weight_decay * p
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g * g
        m_hat, v_hat = m / (1 - betas[0] ** t), v / (1 - betas[1] ** t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
    return p


SGD_CASES = [dict(lr=0.05), dict(lr=0.05, momentum=0.9), dict(lr=0.05, momentum=0.8, dampening=0.3),
             dict(lr=0.03, momentum=0.9, nesterov=True), dict(lr=0.05, momentum=0.9, weight_decay=0.1)]
ADAM_CASES = [dict(lr=0.05), dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6),
              dict(lr=0.05, weight_decay=0.3)]


@pytest.mark.parametrize("hyper", SGD_CASES, ids=lambda h: ",".join(f"{k}={v}" for k, v in h.items()))
def test_sgd_matches_numpy_reference(device, hyper):
    p0, c, a = _problem()
    p, _ = _run(lambda ps: optim.SGD(ps, **hyper), p0, c, a, steps=5, device=device)
    np.testing.assert_allclose(p.numpy(), _sgd_ref(p0, c, a, 5, **hyper), **_tol(np.float64))


@pytest.mark.parametrize("hyper", ADAM_CASES, ids=lambda h: ",".join(f"{k}={v}" for k, v in h.items()))
def test_adam_matches_numpy_reference_with_bias_correction_and_l2(device, hyper):
    p0, c, a = _problem()
    p, opt = _run(lambda ps: optim.Adam(ps, **hyper), p0, c, a, steps=6, device=device)
    np.testing.assert_allclose(p.numpy(), _adam_ref(p0, c, a, 6, **hyper), **_tol(np.float64))
    assert opt.state[p]["step"] == 6


@pytest.mark.parametrize("wd", [0.01, 0.5])
def test_adamw_matches_numpy_reference_with_decoupled_decay(device, wd):
    p0, c, a = _problem()
    p, _ = _run(lambda ps: optim.AdamW(ps, lr=0.05, weight_decay=wd), p0, c, a, steps=6,
                device=device)
    want = _adam_ref(p0, c, a, 6, lr=0.05, weight_decay=wd, decoupled=True)
    np.testing.assert_allclose(p.numpy(), want, **_tol(np.float64))
    l2 = _adam_ref(p0, c, a, 6, lr=0.05, weight_decay=wd)        # and it is not Adam's L2
    assert not np.allclose(want, l2)


def test_adamw_default_weight_decay_is_0_01():
    p = nn.Parameter(mg.zeros(2))
    assert optim.AdamW([p]).param_groups[0]["weight_decay"] == 0.01
    assert optim.Adam([p]).param_groups[0]["weight_decay"] == 0.0


OPTIMIZERS = {
    "sgd": lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
    "adam": lambda ps: optim.Adam(ps, lr=0.05, weight_decay=0.01),
    "adamw": lambda ps: optim.AdamW(ps, lr=0.05, weight_decay=0.1),
}
REFERENCES = {
    "sgd": lambda p0, c, a, n: _sgd_ref(p0, c, a, n, lr=0.05, momentum=0.9, nesterov=True,
                                        weight_decay=0.01),
    "adam": lambda p0, c, a, n: _adam_ref(p0, c, a, n, lr=0.05, weight_decay=0.01),
    "adamw": lambda p0, c, a, n: _adam_ref(p0, c, a, n, lr=0.05, weight_decay=0.1, decoupled=True),
}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_float32_stays_float32_and_tracks_the_reference(device, name):
    p0, c, a = _problem()
    p, opt = _run(OPTIMIZERS[name], p0, c, a, steps=4, device=device, dtype=mg.float32)
    assert p.dtype == mg.float32
    for v in opt.state[p].values():
        if backend.is_array(v):
            assert v.dtype == np.float32 and backend.device_of(v) == p.device
    # each step rounds through float32: a few float32 epsilons per step, relative
    np.testing.assert_allclose(p.numpy(), REFERENCES[name](p0, c, a, 4), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_step_does_not_synchronise_with_the_host(name):
    p0, c, a = _problem()
    p, opt = _run(OPTIMIZERS[name], p0, c, a, steps=1, device="fake", dtype=mg.float32)
    _loss(p, mg.tensor(c, device="fake"), mg.tensor(a, device="fake")).backward()
    backend.reset_sync_count()
    opt.step()
    assert backend.sync_count() == 0


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_parameters_without_gradient_are_skipped(name):
    used, unused = nn.Parameter(mg.ones(3)), nn.Parameter(mg.ones(3))
    opt = OPTIMIZERS[name]([used, unused])
    (used * used).sum().backward()
    opt.step()
    assert unused.tolist() == [1.0, 1.0, 1.0] and not opt.state.get(unused)
    assert used.tolist() != [1.0, 1.0, 1.0]


def test_shared_gradient_arrays_are_not_modified():
    # both inputs of an add receive the same gradient array: the update must not write into it
    a, b = nn.Parameter(mg.ones(3)), nn.Parameter(mg.ones(3))
    (a + b).sum().backward()
    opt = optim.SGD([a, b], lr=0.5, momentum=0.9, weight_decay=0.1)
    opt.step()
    assert a.grad.tolist() == b.grad.tolist() == [1.0, 1.0, 1.0]
    np.testing.assert_allclose(a.numpy(), b.numpy())


def test_zero_grad():
    p = nn.Parameter(mg.ones(2, 2))
    opt = optim.SGD([p], lr=0.1)
    (p * p).sum().backward()
    opt.zero_grad(set_to_none=False)
    assert p.grad.shape == (2, 2) and p.grad.dtype == p.dtype and not p.grad.numpy().any()
    opt.zero_grad()
    assert p.grad is None


def test_closure_is_called_and_its_loss_returned():
    p = nn.Parameter(mg.ones(2))
    opt = optim.SGD([p], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss

    assert opt.step(closure).item() == 2.0
    assert p.tolist() == pytest.approx([0.8, 0.8])


# --------------------------------------------------------------------------- parameter groups

def test_param_groups_use_their_own_hyperparameters(device):
    p0, c, a = _problem()
    q0 = p0[::-1].copy()
    p = nn.Parameter(mg.tensor(p0, dtype=mg.float64, device=device))
    q = nn.Parameter(mg.tensor(q0, dtype=mg.float64, device=device))
    opt = optim.AdamW([{"params": [p], "weight_decay": 0.2}, {"params": [q], "lr": 0.01}],
                      lr=0.05, weight_decay=0.0)
    assert [g["lr"] for g in opt.param_groups] == [0.05, 0.01]
    assert [g["weight_decay"] for g in opt.param_groups] == [0.2, 0.0]
    cc, aa = mg.tensor(c, device=device, dtype=mg.float64), mg.tensor(a, device=device, dtype=mg.float64)
    for _ in range(4):
        opt.zero_grad()
        (_loss(p, cc, aa) + _loss(q, cc, aa)).backward()
        opt.step()
    tol = _tol(np.float64)
    np.testing.assert_allclose(p.numpy(), _adam_ref(p0, c, a, 4, lr=0.05, weight_decay=0.2,
                                                    decoupled=True), **tol)
    np.testing.assert_allclose(q.numpy(), _adam_ref(q0, c, a, 4, lr=0.01), **tol)


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Parameter(mg.randn(10, 4))
        self.w = nn.Parameter(mg.randn(4, 4))
        self.b = nn.Parameter(mg.zeros(4))
        self.ln_weight = nn.Parameter(mg.ones(4))
        self.frozen = nn.Parameter(mg.ones(4, 4), requires_grad=False)


def test_param_groups_for_weight_decay_splits_by_ndim():
    m = _Tiny()
    decay, no_decay = optim.param_groups_for_weight_decay(m, 0.1)
    assert [id(p) for p in decay["params"]] == [id(m.emb), id(m.w)]
    assert [id(p) for p in no_decay["params"]] == [id(m.b), id(m.ln_weight)]
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0


def test_adamw_with_weight_decay_groups_leaves_biases_undecayed():
    m = _Tiny()
    opt = optim.AdamW(optim.param_groups_for_weight_decay(m, 0.1), lr=0.5)
    w0, b0, ln0 = m.w.numpy().copy(), m.b.numpy().copy(), m.ln_weight.numpy().copy()
    for p in (m.emb, m.w, m.b, m.ln_weight):
        p.grad = mg.zeros_like(p)                   # zero gradient: only the decay moves a parameter
    opt.step()
    np.testing.assert_allclose(m.w.numpy(), w0 * (1 - 0.5 * 0.1), rtol=1e-6)
    np.testing.assert_array_equal(m.b.numpy(), b0)
    np.testing.assert_array_equal(m.ln_weight.numpy(), ln0)


def test_invalid_construction_is_a_clear_error():
    p = nn.Parameter(mg.ones(2))
    with pytest.raises(ValueError, match="empty"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match="single Tensor"):
        optim.SGD(p, lr=0.1)
    with pytest.raises(ValueError, match="more than one"):
        optim.SGD([{"params": [p]}, {"params": [p]}], lr=0.1)
    with pytest.raises(ValueError, match="lr"):
        optim.Adam([p], lr=-1.0)
    with pytest.raises(ValueError, match="betas"):
        optim.Adam([p], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="leaf"):
        optim.SGD([p * 2.0], lr=0.1)
    with pytest.raises(ValueError, match="require grad"):
        optim.SGD([mg.ones(2)], lr=0.1)


# --------------------------------------------------------------------------- state dicts

def _to_checkpoint(sd):
    """What a checkpoint writer does: arrays to host NumPy, the rest through JSON."""
    arrays = {(i, k): v.numpy() if isinstance(v, mg.Tensor) else backend.to_host(v)
              for i, e in sd["state"].items() for k, v in e.items() if backend.is_array(v)}
    skeleton = {"param_groups": sd["param_groups"],
                "state": {i: {k: v for k, v in e.items() if not backend.is_array(v)}
                          for i, e in sd["state"].items()}}
    back = json.loads(json.dumps(skeleton))           # int keys become strings, tuples lists
    for (i, k), arr in arrays.items():
        back["state"][str(i)][k] = arr
    return back


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_state_dict_round_trip_continues_identically(device, name):
    p0, c, a = _problem()
    straight, _ = _run(OPTIMIZERS[name], p0, c, a, steps=7, device=device, dtype=mg.float32)

    first, opt = _run(OPTIMIZERS[name], p0, c, a, steps=4, device=device, dtype=mg.float32)
    saved = _to_checkpoint(opt.state_dict())
    resumed = nn.Parameter(mg.tensor(first.numpy(), device=device))
    opt2 = OPTIMIZERS[name]([resumed])
    opt2.load_state_dict(saved)
    assert opt2.state[resumed]["step"] == opt.state[first]["step"]
    cc, aa = mg.tensor(c, device=device, dtype=mg.float32), mg.tensor(a, device=device, dtype=mg.float32)
    for _ in range(3):
        opt2.zero_grad()
        _loss(resumed, cc, aa).backward()
        opt2.step()
    np.testing.assert_array_equal(resumed.numpy(), straight.numpy())


def test_state_dict_is_a_snapshot_and_restores_hyperparameters():
    p0, c, a = _problem()
    p, opt = _run(lambda ps: optim.Adam(ps, lr=0.05), p0, c, a, steps=2)
    sd = opt.state_dict()
    m_saved = sd["state"][0]["exp_avg"].copy()
    opt.param_groups[0]["lr"] = 123.0
    (_loss(p, mg.tensor(c), mg.tensor(a))).backward()
    opt.step()                                        # must not change the snapshot
    np.testing.assert_array_equal(sd["state"][0]["exp_avg"], m_saved)
    opt.load_state_dict(sd)
    assert opt.param_groups[0]["lr"] == 0.05 and opt.state[p]["step"] == 2
    assert isinstance(opt.param_groups[0]["betas"], tuple)


def _state_snapshot(opt):
    return ([{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups],
            {id(p): {k: (backend.to_host(v).copy() if backend.is_array(v) else v)
                     for k, v in e.items()} for p, e in opt.state.items()})


def _assert_same_snapshot(a, b):
    assert a[0] == b[0] and a[1].keys() == b[1].keys()
    for k in a[1]:
        for name, v in a[1][k].items():
            np.testing.assert_array_equal(v, b[1][k][name])


@pytest.mark.parametrize("corrupt, message", [
    (lambda sd: sd["param_groups"].append(dict(sd["param_groups"][0])), "2 parameter groups"),
    (lambda sd: sd["param_groups"][0]["params"].append(99), "group 0 has 3 parameters"),
    (lambda sd: sd["state"][1].__setitem__("exp_avg", np.zeros((7,))), r"exp_avg has shape \(7,\)"),
    (lambda sd: sd["state"][0].pop("exp_avg_sq"), "state entries"),
    (lambda sd: sd["state"].__setitem__(5, dict(sd["state"][0])), "parameter 5"),
], ids=["group-count", "group-size", "state-shape", "state-entry", "state-index"])
def test_mismatched_state_dict_fails_clearly_and_loads_nothing(corrupt, message):
    p0, c, a = _problem()
    w, b = nn.Parameter(mg.tensor(p0)), nn.Parameter(mg.tensor(p0[0]))
    opt = optim.Adam([w, b], lr=0.05)
    (_loss(w, mg.tensor(c), mg.tensor(a)) + (b * b).sum()).backward()
    opt.step()
    sd = opt.state_dict()
    sd["param_groups"][0]["lr"] = 0.5                 # would change if anything were loaded
    other = optim.Adam([w, b], lr=0.05)
    other.load_state_dict(opt.state_dict())
    before = _state_snapshot(other)
    corrupt(sd)
    with pytest.raises(ValueError, match=message) as err:
        other.load_state_dict(sd)
    assert "nothing was loaded" in str(err.value)
    _assert_same_snapshot(before, _state_snapshot(other))


def test_state_dict_from_another_optimizer_is_refused():
    p = nn.Parameter(mg.ones(3))
    sgd = optim.SGD([p], lr=0.1, momentum=0.9)
    (p * p).sum().backward()
    sgd.step()
    with pytest.raises(ValueError, match="state entries"):
        optim.Adam([p]).load_state_dict(sgd.state_dict())


def test_state_dict_loads_across_devices():
    p0, c, a = _problem()
    p, opt = _run(OPTIMIZERS["adam"], p0, c, a, steps=2, device="fake", dtype=mg.float32)
    q = nn.Parameter(mg.tensor(p.numpy()))
    opt_cpu = OPTIMIZERS["adam"]([q])
    opt_cpu.load_state_dict(opt.state_dict())
    assert isinstance(opt_cpu.state[q]["exp_avg"], np.ndarray)
    np.testing.assert_array_equal(opt_cpu.state[q]["exp_avg"], opt.state[p]["exp_avg"].get())


# --------------------------------------------------------------------------- clipping

def _params_with_grads(device="cpu", dtype=mg.float32):
    rng = np.random.default_rng(3)
    ps = []
    for shape in [(3, 4), (5,), ()]:
        p = nn.Parameter(mg.tensor(rng.normal(size=shape), dtype=dtype, device=device))
        p.grad = mg.tensor(rng.normal(size=shape) * 3, dtype=dtype, device=device)
        ps.append(p)
    return ps


def _flat_grads(ps):
    return np.concatenate([p.grad.numpy().reshape(-1).astype(np.float64) for p in ps])


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
def test_clip_grad_norm_returns_the_total_norm_and_scales_to_max_norm(device, norm_type):
    ps = _params_with_grads(device)
    flat = _flat_grads(ps)
    want = np.linalg.norm(flat, ord=norm_type)
    total = optim.clip_grad_norm_(ps, max_norm=1.0, norm_type=norm_type)
    assert total.device == device and total.shape == ()
    assert total.item() == pytest.approx(want, rel=1e-5)
    np.testing.assert_allclose(_flat_grads(ps), flat / (want + 1e-6), rtol=1e-5)
    assert np.linalg.norm(_flat_grads(ps), ord=norm_type) == pytest.approx(1.0, rel=1e-5)
    assert all(p.grad.dtype == mg.float32 for p in ps)


def test_clip_grad_norm_below_max_norm_changes_nothing():
    ps = _params_with_grads()
    flat = _flat_grads(ps)
    total = optim.clip_grad_norm_(ps, max_norm=1e6)
    np.testing.assert_array_equal(_flat_grads(ps), flat)
    assert total.item() == pytest.approx(np.linalg.norm(flat), rel=1e-6)


def test_clip_grad_norm_scales_a_shared_gradient_array_once():
    a, b = nn.Parameter(mg.ones(4)), nn.Parameter(mg.ones(4))
    (a + b).sum().backward()                          # a.grad and b.grad share one array
    total = optim.clip_grad_norm_([a, b], max_norm=1.0)
    assert total.item() == pytest.approx(math.sqrt(8))
    np.testing.assert_allclose(a.grad.numpy(), 1 / math.sqrt(8), rtol=1e-5)
    np.testing.assert_allclose(b.grad.numpy(), 1 / math.sqrt(8), rtol=1e-5)


def test_clip_grad_norm_without_gradients_returns_zero():
    assert optim.clip_grad_norm_([nn.Parameter(mg.ones(2))], 1.0).item() == 0.0


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_nonfinite_gradient_warns_and_leaves_gradients_unchanged(device, bad):
    ps = _params_with_grads(device)
    g = ps[0].grad.numpy().copy()
    g[1, 2] = bad
    ps[0].grad = mg.tensor(g, device=device)
    before = [p.grad.numpy().copy() for p in ps]
    with pytest.warns(RuntimeWarning, match="left unchanged"):
        total = optim.clip_grad_norm_(ps, max_norm=1.0)
    assert not math.isfinite(total.item())
    for p, b in zip(ps, before):
        np.testing.assert_array_equal(p.grad.numpy(), b)   # NaN stays NaN, nothing scaled


def test_nonfinite_gradient_raises_when_asked_and_leaves_gradients_unchanged():
    ps = _params_with_grads()
    ps[1].grad = mg.tensor([1.0, math.nan, 0.0, 0.0, 0.0])
    before = [p.grad.numpy().copy() for p in ps]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(RuntimeError, match="nan"):
            optim.clip_grad_norm_(ps, max_norm=1.0, error_if_nonfinite=True)
    for p, b in zip(ps, before):
        np.testing.assert_array_equal(p.grad.numpy(), b)


def test_clip_grad_value(device):
    ps = _params_with_grads(device)
    flat = _flat_grads(ps)
    optim.clip_grad_value_(ps, 0.5)
    np.testing.assert_allclose(_flat_grads(ps), np.clip(flat, -0.5, 0.5), rtol=1e-6)
    assert all(p.grad.dtype == mg.float32 and p.grad.device == device for p in ps)


# --------------------------------------------------------------------------- schedules

def test_cosine_with_warmup_function_at_key_steps():
    f = lambda s: optim.cosine_with_warmup(s, base_lr=1.0, warmup=10, total=110, min_lr=0.1)  # noqa: E731
    assert f(0) == pytest.approx(1 / 11)               # warmup starts near 0 ...
    assert f(9) == pytest.approx(10 / 11)
    assert f(10) == pytest.approx(1.0)                 # ... reaches the base lr
    assert f(60) == pytest.approx(0.55)                # halfway: the mean of base and min
    assert f(110) == pytest.approx(0.1) and f(500) == pytest.approx(0.1)
    lrs = [f(s) for s in range(10, 111)]
    assert all(x >= y for x, y in zip(lrs, lrs[1:]))   # monotone decay
    assert optim.cosine_with_warmup(0, 1.0, 0, 10) == 1.0


def _opt_two_groups(lr=1.0):
    a, b = nn.Parameter(mg.ones(2)), nn.Parameter(mg.ones(2))
    return optim.SGD([{"params": [a]}, {"params": [b], "lr": lr / 10}], lr=lr)


def test_cosine_with_warmup_scheduler_sets_every_group():
    opt = _opt_two_groups()
    sched = optim.CosineWithWarmup(opt, warmup_steps=4, total_steps=20, min_lr=[0.1, 0.01])
    for step in range(25):
        want = [optim.cosine_with_warmup(step, 1.0, 4, 20, 0.1),
                optim.cosine_with_warmup(step, 0.1, 4, 20, 0.01)]
        assert [g["lr"] for g in opt.param_groups] == pytest.approx(want)
        assert sched.get_last_lr() == pytest.approx(want)
        sched.step()


def test_step_lr_and_constant_lr():
    opt = _opt_two_groups()
    sched = optim.StepLR(opt, step_size=3, gamma=0.5)
    seen = []
    for _ in range(7):
        seen.append(sched.get_last_lr()[0])
        sched.step()
    assert seen == pytest.approx([1, 1, 1, 0.5, 0.5, 0.5, 0.25])
    opt = _opt_two_groups()
    const = optim.ConstantLR(opt)
    const.step()
    assert const.get_last_lr() == pytest.approx([1.0, 0.1])
    opt = _opt_two_groups()
    warm = optim.ConstantLR(opt, factor=0.5, total_iters=2)
    assert [warm.get_last_lr()[0] for _ in range(1)] == [0.5]
    warm.step(), warm.step()
    assert warm.get_last_lr() == pytest.approx([1.0, 0.1])


def test_scheduler_state_dict_is_json_and_resumes():
    opt = _opt_two_groups()
    sched = optim.CosineWithWarmup(opt, warmup_steps=3, total_steps=30, min_lr=0.01)
    for _ in range(7):
        sched.step()
    saved = json.loads(json.dumps(sched.state_dict()))
    opt2 = _opt_two_groups()
    sched2 = optim.CosineWithWarmup(opt2, warmup_steps=3, total_steps=30, min_lr=0.01)
    sched2.load_state_dict(saved)
    assert [g["lr"] for g in opt2.param_groups] == [g["lr"] for g in opt.param_groups]
    for _ in range(5):
        sched.step(), sched2.step()
        assert sched2.get_last_lr() == sched.get_last_lr()
    with pytest.raises(ValueError, match="nothing was loaded"):
        optim.StepLR(opt2, step_size=2).load_state_dict(saved)


def test_scheduled_lr_is_the_one_the_optimizer_uses():
    p = nn.Parameter(mg.zeros(1))
    opt = optim.SGD([p], lr=1.0)
    sched = optim.StepLR(opt, step_size=1, gamma=0.5)
    for _ in range(3):
        p.grad = mg.ones(1)
        opt.step()
        sched.step()
    assert p.item() == pytest.approx(-(1 + 0.5 + 0.25))
