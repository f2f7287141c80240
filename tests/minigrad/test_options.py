"""Every string option is validated: a value outside the valid set (a typo, another
case, None, a number) is an error that names the function and lists every valid
value, before any computation runs."""

from __future__ import annotations

import pytest

import minigrad as mg
import minigrad.functional as F
import minigrad.nn.init as init
from minigrad.testing.options import check_option_refused

BAD = ["bogus", "MEAN", "", None, 1]

# name -> (call with the option, the valid values the message must list)
OPTIONS = {
    "gelu(approximate=)": (lambda v: F.gelu(mg.ones(2), approximate=v), ["none", "tanh"]),
    "cross_entropy(reduction=)": (lambda v: F.cross_entropy(mg.ones(2, 3), mg.tensor([0, 1]), reduction=v),
                                  ["mean", "sum", "none"]),
    "nll_loss(reduction=)": (lambda v: F.nll_loss(mg.ones(2, 3), mg.tensor([0, 1]), reduction=v),
                             ["mean", "sum", "none"]),
    "mse_loss(reduction=)": (lambda v: F.mse_loss(mg.ones(2), mg.ones(2), reduction=v),
                             ["mean", "sum", "none"]),
    "kaiming_uniform_(mode=)": (lambda v: init.kaiming_uniform_(mg.ones(2, 2), mode=v),
                                ["fan_in", "fan_out"]),
    "kaiming_normal_(nonlinearity=)": (lambda v: init.kaiming_normal_(mg.ones(2, 2), nonlinearity=v),
                                       ["linear", "relu", "tanh", "leaky_relu"]),
    "device()": (lambda v: mg.device(v), ["cpu", "cuda", "fake"]),
    "to()": (lambda v: mg.ones(2).to(v), ["cpu", "cuda", "fake"]),
}


@pytest.mark.parametrize("name", sorted(OPTIONS))
@pytest.mark.parametrize("value", BAD, ids=repr)
def test_a_bad_string_option_is_refused_listing_the_valid_values(name, value):
    call, valid = OPTIONS[name]
    if name in ("device()", "to()") and value is None:
        return                      # None is the default device (no move), as in PyTorch
    check_option_refused(call, value, name.split("(")[0], valid)


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_each_valid_value_is_accepted(name):
    call, valid = OPTIONS[name]
    for v in valid:
        if name in ("device()", "to()") and v == "cuda" and not mg.cuda.is_available():
            continue
        call(v)
