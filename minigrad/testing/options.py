"""``check_option_refused``: the test that a string option's bad value is refused well.

An option like ``reduction=`` or ``activation=`` given a value outside its set (a
typo, another case, None, a number) must raise ValueError or TypeError before any
work, with a message that starts with the function's or class's name and lists
every valid value, quoted."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


def check_option_refused(call: Callable[[Any], Any], value: Any, owner: str,
                         valid: Iterable[str]) -> None:
    """``call(value)`` raises a ValueError or TypeError whose message starts with
    ``owner + ":"`` and holds each of ``valid`` quoted (``'mean'``); AssertionError if not."""
    try:
        call(value)
    except (ValueError, TypeError) as e:
        message = str(e)
    else:
        raise AssertionError(f"{owner}: the bad value {value!r} was accepted")
    assert message.startswith(owner + ":"), f"{owner}: the error does not name it: {message!r}"
    for v in valid:
        assert repr(v) in message, f"{owner}: {message!r} does not list {v!r}"
