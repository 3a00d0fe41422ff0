"""The one polling helper of the tests: wait until a condition holds, or fail saying what was last seen."""

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(condition: Callable[[], T], timeout: float = 30.0, interval: float = 0.1, what: str = "") -> T:
    """Call `condition` until it returns something truthy and return that; AssertionError at the timeout.

    An exception raised by `condition` counts as "not yet" and is reported if the time runs out.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = condition()
        except Exception as error:  # a probe that fails now may succeed later (a daemon still starting)
            last = error
        else:
            if result:
                return result
            last = result
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"{what or getattr(condition, '__name__', 'condition')} not true within {timeout}s; last: {last!r}"
            )
        time.sleep(interval)
