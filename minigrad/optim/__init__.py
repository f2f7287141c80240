"""``minigrad.optim``: optimizers, gradient clipping and learning-rate schedules.

    optimizer.py   Optimizer (parameter groups, zero_grad, step, state_dict),
                   param_groups_for_weight_decay
    sgd.py         SGD (momentum, Nesterov, L2 weight decay)
    adam.py        Adam (L2 weight decay added to the gradient)
    adamw.py       AdamW (decoupled weight decay)
    clip.py        clip_grad_norm_, clip_grad_value_
    schedules.py   LRScheduler, ConstantLR, StepLR, CosineWithWarmup, cosine_with_warmup

A new optimizer is one file: a subclass of ``Optimizer`` with an
``_update(p, g, state, group)`` that changes ``p.data`` in place.
"""

from .adam import Adam
from .adamw import AdamW
from .clip import clip_grad_norm_, clip_grad_value_
from .optimizer import Optimizer, param_groups_for_weight_decay
from .schedules import ConstantLR, CosineWithWarmup, LRScheduler, StepLR, cosine_with_warmup
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "param_groups_for_weight_decay",
           "clip_grad_norm_", "clip_grad_value_",
           "LRScheduler", "ConstantLR", "StepLR", "CosineWithWarmup", "cosine_with_warmup"]
