"""Every string option of lmroad's layers, models and tokenizers is validated: a
value outside the valid set is an error naming the class and listing every valid
value. (The command line's choices are checked in test_cli.py.)"""

from __future__ import annotations

import pytest

import lmroad.layers as L
import lmroad.models as M
from lmroad.data import tokenizers as T
from minigrad.testing.options import check_option_refused

BAD = ["bogus", "TANH", "", None, 1]

OPTIONS = {
    "TransformerBlock(activation=)": (lambda v: L.TransformerBlock(8, 2, activation=v),
                                      ["gelu", "gelu_tanh", "relu"]),
    "FeedForward(activation=)": (lambda v: L.FeedForward(8, activation=v), ["gelu", "gelu_tanh", "relu"]),
    "RNNCell(nonlinearity=)": (lambda v: L.RNNCell(2, 3, nonlinearity=v), ["tanh", "relu"]),
    "RNNLM(cell=)": (lambda v: M.RNNLM(vocab_size=5, cell=v), ["rnn", "lstm", "gru"]),
    "NGramLM(smoothing=)": (lambda v: M.NGramLM(n=2, vocab_size=5, smoothing=v),
                            ["add_k", "kneser_ney", "backoff"]),
    "TransformerLM(activation=)": (lambda v: M.TransformerLM(vocab_size=5, activation=v),
                                   ["gelu", "gelu_tanh", "relu"]),
    "CharTokenizer(errors=)": (lambda v: T.CharTokenizer(["a", "b", "?"], unk_token="?", errors=v),
                               ["strict", "skip", "replace"]),
}


@pytest.mark.parametrize("name", sorted(OPTIONS))
@pytest.mark.parametrize("value", BAD, ids=repr)
def test_a_bad_string_option_is_refused_listing_the_valid_values(name, value):
    call, valid = OPTIONS[name]
    check_option_refused(call, value, name.split("(")[0], valid)


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_each_valid_value_is_accepted(name):
    call, valid = OPTIONS[name]
    for v in valid:
        call(v)
