"""``lmroad.experiments``: the road, measured (``python -m lmroad road``).

    road.py           the command: budgets, the run, progress lines
    quality.py        1. quality and cost of every model at matched parameters and time
    gradient_flow.py  2. ‖∂L_T/∂h_t‖ against T − t (vanishing gradients)
    long_range.py     3. recall of a token k steps back
    interpret.py      4. attention maps and LSTM gates
    writeup.py        5. "how to choose", the claims checked, and the report
    probes.py         looking inside a model while it runs (hidden states, gates, attention)
    report.py         the report folder: Markdown, CSV, optional PNG
    common.py         progress lines and a small training loop
"""

__all__ = ["road"]
