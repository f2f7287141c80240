"""A training step on a device waits for the device only where it must.

The fake device counts host synchronisations as CuPy would incur them, so
this proves, without a GPU, that a step (forward, backward, clipping,
optimizer) inside ``device_checks(False)`` never waits: the only sync is the
logged loss."""

import pytest

import minigrad as mg
from lmroad.models import LSTMLM, TransformerLM
from minigrad import backend


@pytest.mark.parametrize("make", [
    lambda: TransformerLM(vocab_size=11, n_layer=2, n_head=2, n_embd=8, block_size=8),
    lambda: LSTMLM(vocab_size=11, n_embd=8, hidden_size=8, num_layers=2),
], ids=["transformer", "lstm"])
def test_training_step_syncs_only_for_the_logged_loss(make):
    model = make().to("fake")
    opt = model.configure_optimizers(0.1, 1e-3, (0.9, 0.95))
    x = mg.randint(0, 11, (2, 8), device="fake")
    y = mg.randint(0, 11, (2, 8), device="fake")
    backend.reset_sync_count()
    with mg.device_checks(False):
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        mg.optim.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    assert backend.sync_count() == 0
    loss.item()
    assert backend.sync_count() == 1


def test_device_checks_still_catch_bad_indices_by_default():
    w = mg.randn(5, 3, device="fake")
    with pytest.raises(IndexError, match="out of range"):
        mg.functional.embedding(mg.tensor([7], device="fake"), w)
    with mg.device_checks(False):   # skipped on a device, never on the cpu
        with pytest.raises(IndexError, match="out of range"):
            mg.functional.embedding(mg.tensor([7]), mg.randn(5, 3))
