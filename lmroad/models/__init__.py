"""``lmroad.models``: the language models of the road, one per file, one interface.

    logits, loss = model(idx, targets)                 # (B, T) ints -> (B, T, V), scalar
    model.generate(idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, seed=None)
    type(model).from_config(model.config)              # config: a frozen dataclass

``MODELS`` maps each model's ``model_type`` to its class, so a checkpoint
stores ``{"model_type": ..., "config": asdict(model.config)}`` and
``build_model(model_type, config)`` rebuilds it.
"""

from __future__ import annotations

from .base import LanguageModel, check_sampling_args, filter_logits, sample_logits
from .ngram import NGramConfig, NGramLM
from .rnn import GRULM, LSTMLM, RNNLM, RNNConfig, detach_state
from .transformer import TransformerConfig, TransformerLM

MODELS: dict[str, type[LanguageModel]] = {
    cls.model_type: cls for cls in (NGramLM, RNNLM, LSTMLM, GRULM, TransformerLM)
}


def build_model(model_type: str, config=None) -> LanguageModel:
    """The model ``MODELS[model_type]`` built from ``config`` (its dataclass or a dict)."""
    if model_type not in MODELS:
        raise ValueError(f"build_model: unknown model {model_type!r}; valid: {sorted(MODELS)}")
    return MODELS[model_type].from_config({} if config is None else config)


__all__ = ["LanguageModel", "MODELS", "build_model", "sample_logits", "filter_logits",
           "check_sampling_args", "NGramLM", "NGramConfig", "RNNLM", "LSTMLM", "GRULM", "RNNConfig",
           "detach_state", "TransformerLM", "TransformerConfig"]
