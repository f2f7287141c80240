"""minigrad.nn: Module registration and traversal, modes, devices, state
dicts, printing, and the initialisers."""

import math

import numpy as np
import pytest

import minigrad as mg
from minigrad import nn
from minigrad.nn import init


class Affine(nn.Module):
    """A tiny layer: a weight, an optional bias, one persistent and one
    non-persistent buffer."""

    def __init__(self, n_in: int, n_out: int, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(mg.randn(n_out, n_in))
        self.bias = nn.Parameter(mg.zeros(n_out)) if bias else None
        self.register_buffer("count", mg.zeros(1))
        self.register_buffer("scratch", mg.ones(n_out), persistent=False)

    def forward(self, x):
        y = x @ self.weight.transpose()
        return y + self.bias if self.bias is not None else y

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]}, {self.weight.shape[0]}"


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = Affine(3, 4)
        self.blocks = nn.ModuleList([Affine(4, 4), Affine(4, 4, bias=False)])
        self.heads = nn.ModuleDict({"a": Affine(4, 2), "b": Affine(4, 1)})
        self.scale = 2.0  # a plain attribute, not registered

    def forward(self, x):
        x = self.inp(x)
        for b in self.blocks:
            x = b(x)
        return self.heads["a"](x)


def _values(module) -> dict:
    return {k: v.numpy().copy() for k, v in module.state_dict().items()}


# --------------------------------------------------------------------------- registration

def test_attribute_assignment_registers_parameters_buffers_and_submodules():
    m = Affine(3, 2)
    assert list(m._parameters) == ["weight", "bias"]
    assert list(m._buffers) == ["count", "scratch"]
    net = Net()
    assert [n for n, _ in net.named_children()] == ["inp", "blocks", "heads"]
    assert "scale" not in net._parameters and net.scale == 2.0


def test_named_parameters_gives_dotted_names_through_containers():
    names = [n for n, _ in Net().named_parameters()]
    assert names == ["inp.weight", "inp.bias", "blocks.0.weight", "blocks.0.bias",
                     "blocks.1.weight", "heads.a.weight", "heads.a.bias", "heads.b.weight",
                     "heads.b.bias"]


def test_named_buffers_include_non_persistent_ones():
    names = [n for n, _ in Affine(3, 2).named_buffers()]
    assert names == ["count", "scratch"]


def test_none_parameter_is_skipped():
    m = Affine(3, 2, bias=False)
    assert [n for n, _ in m.named_parameters()] == ["weight"]
    assert "bias" not in m.state_dict()


def test_shared_parameter_is_counted_once():
    net = Net()
    net.heads["b"].weight = net.heads["a"].weight
    params = list(net.parameters())
    assert len(params) == len({id(p) for p in params}) == 8
    assert "heads.b.weight" not in dict(net.named_parameters())   # first name wins
    n_tied = sum(p.size for p in params)
    assert net.num_parameters() == n_tied


def test_shared_submodule_is_visited_once():
    net = Net()
    net.blocks.append(net.blocks[0])
    assert len(net.blocks) == 3
    assert len(list(net.modules())) == len({id(m) for m in net.modules()})


def test_num_parameters_trainable_only():
    m = Affine(3, 2)
    assert m.num_parameters() == 3 * 2 + 2
    m.bias.requires_grad = False
    assert m.num_parameters(trainable_only=True) == 6
    assert m.num_parameters() == 8


def test_assigning_a_tensor_to_a_buffer_name_keeps_it_a_buffer():
    m = Affine(3, 2)
    m.count = mg.full((1,), 5.0)
    assert m._buffers["count"].tolist() == [5.0]
    assert m.state_dict()["count"].tolist() == [5.0]
    m.to("fake")
    assert m.count.device == "fake"
    m.scratch = mg.zeros(2)                      # non-persistent stays non-persistent
    assert "scratch" in m._buffers and "scratch" not in m.state_dict()


def test_assigning_a_parameter_or_module_to_a_plain_name_registers_it():
    m = Affine(3, 2)
    m.extra = nn.Parameter(mg.zeros(2))
    m.sub = Affine(2, 2)
    assert "extra" in m._parameters and "sub" in m._modules and "extra" not in m.__dict__
    del m.extra
    assert "extra" not in m._parameters


def test_register_buffer_re_registration_updates_persistence():
    m = Affine(3, 2)
    assert "scratch" not in m.state_dict()
    m.register_buffer("scratch", mg.ones(2), persistent=True)
    assert "scratch" in m.state_dict()
    m.register_buffer("scratch", mg.ones(2), persistent=False)
    assert "scratch" not in m.state_dict()


def test_register_buffer_over_a_parameter_is_an_error():
    m = Affine(3, 2)
    with pytest.raises(KeyError, match="weight"):
        m.register_buffer("weight", mg.zeros(2, 3))
    assert "weight" in m._parameters and "weight" not in m._buffers


def test_assignment_before_super_init_is_a_clear_error():
    class Bad(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(mg.zeros(2))

    with pytest.raises(AttributeError, match="super"):
        Bad()


def test_containers_index_iterate_and_call():
    seq = nn.Sequential(Affine(3, 4), Affine(4, 2))
    assert len(seq) == 2 and isinstance(seq[-1], Affine)
    assert [n for n, _ in seq.named_parameters()][:2] == ["0.weight", "0.bias"]
    assert seq(mg.randn(5, 3)).shape == (5, 2)
    named = nn.Sequential({"first": Affine(3, 4), "second": Affine(4, 2)})
    assert [n for n, _ in named.named_children()] == ["first", "second"]
    assert named(mg.randn(5, 3)).shape == (5, 2)
    md = nn.ModuleDict({"x": Affine(1, 1)})
    assert "x" in md and list(md.keys()) == ["x"] and len(md) == 1
    with pytest.raises(TypeError, match="Module"):
        nn.ModuleList([Affine(1, 1), 3])
    with pytest.raises(TypeError, match="Module"):
        md["y"] = "not a module"


# --------------------------------------------------------------------------- modes, grads, devices

def test_train_and_eval_propagate_to_every_submodule():
    net = Net()
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.blocks.train()
    assert net.blocks[1].training and not net.inp.training
    net.train()
    assert all(m.training for m in net.modules())


def test_zero_grad_sets_none_or_zeros():
    m = Affine(3, 2)
    m(mg.randn(4, 3)).sum().backward()
    assert m.weight.grad is not None
    m.zero_grad(set_to_none=False)
    assert m.weight.grad.shape == (2, 3) and not m.weight.grad.numpy().any()
    assert m.weight.grad.dtype == m.weight.dtype
    m.zero_grad()
    assert m.weight.grad is None and m.bias.grad is None


def test_to_device_keeps_parameter_identity_and_moves_grads_and_buffers(device):
    if device == "cpu":
        pytest.skip("moving to the device the tensors are already on")
    m = Affine(3, 2)
    m(mg.randn(4, 3)).sum().backward()
    before = {n: id(p) for n, p in m.named_parameters()}
    w_host, g_host = m.weight.numpy().copy(), m.weight.grad.numpy().copy()
    assert m.to(device) is m
    assert {n: id(p) for n, p in m.named_parameters()} == before
    assert m.weight.device == device and m.weight.grad.device == device
    assert all(b.device == device for b in m.buffers())
    np.testing.assert_array_equal(m.weight.numpy(), w_host)
    np.testing.assert_array_equal(m.weight.grad.numpy(), g_host)
    assert m.weight.requires_grad and isinstance(m.weight, nn.Parameter)
    y = m(mg.randn(4, 3, device=device))          # still usable there
    assert y.device == device
    m.to("cpu")
    assert m.weight.device == "cpu" and m.weight.grad.device == "cpu"


def test_to_dtype_casts_floating_parameters_and_keeps_identity():
    m = Affine(3, 2)
    w = m.weight
    m.to(dtype=mg.float64)
    assert m.weight is w and w.dtype == mg.float64 and m.count.dtype == mg.float64
    with pytest.raises(TypeError, match="floating"):
        m.to(dtype=mg.int64)


def test_requires_grad_toggle():
    m = Affine(3, 2).requires_grad_(False)
    assert not any(p.requires_grad for p in m.parameters())


# --------------------------------------------------------------------------- state dicts

def test_state_dict_keys_exclude_non_persistent_buffers():
    keys = list(Net().state_dict())
    assert "inp.count" in keys and not any(k.endswith("scratch") for k in keys)
    assert keys[:3] == ["inp.weight", "inp.bias", "inp.count"]


def test_state_dict_round_trip_between_devices(device):
    src = Net().to(device)
    dst = Net()
    missing, unexpected = dst.load_state_dict(src.state_dict())
    assert missing == [] and unexpected == []
    for k, v in _values(src).items():
        np.testing.assert_array_equal(_values(dst)[k], v)
    assert all(p.device == "cpu" for p in dst.parameters())


def test_load_state_dict_copies_values():
    a, b = Affine(3, 2), Affine(3, 2)
    b.load_state_dict(a.state_dict())
    b.weight.data += 1.0
    assert not np.array_equal(a.weight.numpy(), b.weight.numpy())


def test_load_state_dict_accepts_host_arrays_and_keeps_dtype():
    m = Affine(3, 2)
    sd = {k: v.numpy().astype(np.float64) + 1.0 for k, v in m.state_dict().items()}
    m.load_state_dict(sd)
    assert m.weight.dtype == mg.float32
    np.testing.assert_allclose(m.weight.numpy(), sd["weight"], rtol=1e-6)


def test_strict_load_reports_every_problem_in_one_error_and_loads_nothing():
    m = Net()
    before = _values(m)
    sd = dict(Net().state_dict())
    del sd["inp.bias"]                                            # missing
    sd["extra.weight"] = mg.zeros(2)                              # unexpected
    sd["blocks.0.weight"] = mg.zeros(5, 4)                        # wrong shape
    with pytest.raises(ValueError) as err:
        m.load_state_dict(sd)
    msg = str(err.value)
    assert "inp.bias" in msg and "extra.weight" in msg and "blocks.0.weight" in msg
    assert "(5, 4)" in msg and "(4, 4)" in msg and "nothing was loaded" in msg
    for k, v in _values(m).items():                               # not half-loaded
        np.testing.assert_array_equal(v, before[k])


def test_non_strict_load_reports_missing_and_unexpected_but_loads_the_rest():
    m = Net()
    other = Net()
    sd = dict(other.state_dict())
    del sd["inp.bias"]
    sd["extra.weight"] = mg.zeros(2)
    bias_before = m.inp.bias.numpy().copy()
    missing, unexpected = m.load_state_dict(sd, strict=False)
    assert missing == ["inp.bias"] and unexpected == ["extra.weight"]
    np.testing.assert_array_equal(m.inp.weight.numpy(), other.inp.weight.numpy())
    np.testing.assert_array_equal(m.inp.bias.numpy(), bias_before)


def test_non_strict_load_still_refuses_shape_mismatches():
    m = Net()
    before = _values(m)
    sd = dict(Net().state_dict())
    sd["inp.weight"] = mg.zeros(1, 1)
    with pytest.raises(ValueError, match="inp.weight"):
        m.load_state_dict(sd, strict=False)
    for k, v in _values(m).items():
        np.testing.assert_array_equal(v, before[k])


# --------------------------------------------------------------------------- printing

def test_repr_is_an_indented_tree():
    text = repr(Net())
    assert text.splitlines()[0] == "Net("
    assert "  (inp): Affine(3, 4)" in text
    assert "  (blocks): ModuleList(\n    (0): Affine(4, 4)\n    (1): Affine(4, 4)\n  )" in text
    assert "    (a): Affine(4, 2)" in text
    assert text.endswith(")")


# --------------------------------------------------------------------------- initialisers

def _big(*shape, dtype=mg.float32):
    return mg.zeros(*shape, dtype=dtype)


def test_xavier_uniform_bounds_and_variance():
    t = init.xavier_uniform_(_big(400, 600))
    a = math.sqrt(6.0 / (400 + 600))
    x = t.numpy()
    assert np.abs(x).max() <= a and np.abs(x).max() > 0.99 * a
    assert abs(x.var() / (a * a / 3) - 1) < 0.02        # Var U(-a, a) = a²/3
    assert abs(x.mean()) < 0.01 * a


def test_xavier_normal_std():
    x = init.xavier_normal_(_big(400, 600), gain=2.0).numpy()
    assert abs(x.std() / (2.0 * math.sqrt(2.0 / 1000)) - 1) < 0.02


def test_kaiming_uniform_and_normal_use_fan_in_and_gain():
    x = init.kaiming_normal_(_big(300, 500), nonlinearity="relu").numpy()
    assert abs(x.std() / math.sqrt(2.0 / 500) - 1) < 0.02
    y = init.kaiming_uniform_(_big(300, 500), mode="fan_out", nonlinearity="relu").numpy()
    bound = math.sqrt(2.0) * math.sqrt(3.0 / 300)
    assert np.abs(y).max() <= bound and abs(y.std() / math.sqrt(2.0 / 300) - 1) < 0.02
    with pytest.raises(ValueError, match="mode"):
        init.kaiming_normal_(_big(3, 3), mode="fan_both")


def test_fans_of_conv_shaped_tensors_include_the_receptive_field():
    x = init.kaiming_normal_(_big(64, 32, 3, 3), nonlinearity="linear").numpy()
    assert abs(x.std() / math.sqrt(1.0 / (32 * 9)) - 1) < 0.05


@pytest.mark.parametrize("shape", [(50, 50), (30, 80), (80, 30), (8, 4, 5)])
def test_orthogonal_rows_or_columns_are_orthonormal(shape):
    q = init.orthogonal_(_big(*shape, dtype=mg.float64), gain=1.5).numpy().reshape(shape[0], -1)
    small = q.T @ q if q.shape[0] >= q.shape[1] else q @ q.T
    np.testing.assert_allclose(small, 1.5 ** 2 * np.eye(small.shape[0]), atol=1e-10)


def test_constant_zeros_ones_normal_uniform():
    assert init.constant_(_big(2, 3), 0.5).tolist() == [[0.5] * 3] * 2
    assert not init.zeros_(mg.ones(4)).numpy().any()
    assert init.ones_(_big(4)).tolist() == [1.0] * 4
    u = init.uniform_(_big(10000), -2.0, 3.0).numpy()
    assert u.min() >= -2.0 and u.max() < 3.0 and abs(u.mean() - 0.5) < 0.05
    n = init.normal_(_big(10000), 1.0, 0.5).numpy()
    assert abs(n.mean() - 1.0) < 0.02 and abs(n.std() - 0.5) < 0.02


def test_same_seed_gives_the_same_weights_on_cpu_and_fake():
    weights = {}
    for dev in ("cpu", "fake"):
        mg.manual_seed(7)
        t = mg.zeros(20, 30, device=dev)
        init.xavier_uniform_(t)
        init.orthogonal_(o := mg.zeros(6, 6, device=dev))
        assert t.device == dev and o.device == dev
        weights[dev] = (t.numpy(), o.numpy())
    for a, b in zip(weights["cpu"], weights["fake"]):
        np.testing.assert_array_equal(a, b)
    mg.manual_seed(7)
    again = init.xavier_uniform_(mg.zeros(20, 30)).numpy()
    np.testing.assert_array_equal(again, weights["cpu"][0])


@pytest.mark.parametrize("dtype", [mg.float16, mg.float32, mg.float64])
def test_initialisers_preserve_dtype_and_parameter_identity(dtype):
    p = nn.Parameter(mg.zeros(8, 8, dtype=dtype))
    for fn in (init.xavier_uniform_, init.xavier_normal_, init.kaiming_uniform_,
               init.kaiming_normal_, init.orthogonal_, init.zeros_):
        out = fn(p)
        assert out is p and p.dtype == dtype and p.requires_grad


def test_integer_tensor_is_a_clear_error():
    with pytest.raises(TypeError, match="floating"):
        init.xavier_uniform_(mg.zeros(3, 3, dtype=mg.int64))
    with pytest.raises(TypeError, match="floating"):
        init.constant_(mg.zeros(3, dtype=mg.int32), 1.0)


def test_fan_based_init_of_a_vector_is_a_clear_error():
    with pytest.raises(ValueError, match="2 dims"):
        init.xavier_uniform_(_big(5))
    with pytest.raises(ValueError, match="2 dims"):
        init.orthogonal_(_big(5))


def test_calculate_gain():
    assert init.calculate_gain("tanh") == pytest.approx(5.0 / 3)
    assert init.calculate_gain("leaky_relu", 0.2) == pytest.approx(math.sqrt(2 / 1.04))
    with pytest.raises(ValueError, match="nonlinearity"):
        init.calculate_gain("swishy")


def test_assigning_a_plain_tensor_to_a_parameter_name_is_a_type_error():
    import minigrad as mg
    from minigrad import nn

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(mg.zeros(2))

    m = M()
    with pytest.raises(TypeError, match="parameter 'weight'"):
        m.weight = mg.ones(2)
    assert isinstance(m.weight, nn.Parameter)


def test_forward_hook_sees_output_and_can_be_removed():
    import minigrad as mg
    from minigrad import nn

    class Double(nn.Module):
        def forward(self, x):
            return x * 2.0

    m, seen = Double(), []
    remove = m.register_forward_hook(lambda mod, args, out: seen.append((mod, out.tolist())))
    m(mg.tensor([1.0]))
    assert seen == [(m, [2.0])]
    replace = m.register_forward_hook(lambda mod, args, out: out + 1.0)
    assert m(mg.tensor([1.0])).tolist() == [3.0]
    remove()
    replace()
    m(mg.tensor([1.0]))
    assert len(seen) == 2 and m(mg.tensor([1.0])).tolist() == [2.0]


def test_module_to_takes_a_dtype_alone_as_pytorch_does():
    m = nn.Module()
    m.w = nn.Parameter(mg.zeros(2))
    assert m.to(mg.float64).w.dtype == mg.float64
    assert m.to("float32").w.dtype == mg.float32
    assert m.to("fake").w.device == "fake"
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        m.to("gpu")


def test_skip_init_draws_nothing_and_leaves_zeros():
    from minigrad.backend import host_rng
    mg.manual_seed(7)
    before = host_rng().bit_generator.state
    with nn.init.skip_init():
        t = mg.zeros(4, 3)
        nn.init.normal_(t)
        nn.init.kaiming_uniform_(t, a=5 ** 0.5)
        nn.init.orthogonal_(t)
        nn.init.ones_(t)
    assert host_rng().bit_generator.state == before
    np.testing.assert_array_equal(t.numpy(), np.zeros((4, 3)))
    nn.init.normal_(t)                                     # off again after the block
    assert host_rng().bit_generator.state != before and np.abs(t.numpy()).sum() > 0
