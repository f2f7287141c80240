"""``minigrad.nn``: Module, Parameter, containers and initialisers.

The layers themselves (Linear, LSTMCell, MultiHeadAttention, ...) live in
``lmroad.layers``: this package is only the machinery they are built on.
"""

from . import init
from .module import Module, ModuleDict, ModuleList, Sequential
from .parameter import Parameter

__all__ = ["Module", "ModuleList", "ModuleDict", "Sequential", "Parameter", "init"]
