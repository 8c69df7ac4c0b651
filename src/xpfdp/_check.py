"""Argument checks shared by the public entry points (Python and Cython modules).

A C-integer parameter in Cython accepts a float and truncates it (1.5 becomes 1), so public
functions take such values as objects and pass them through `integer` first: a real
integer type (int, numpy integer, anything with __index__) in a stated range, or a clear
TypeError/ValueError naming the argument.
"""

import operator


def integer(value, name: str, lo: int, hi: int) -> int:
    """`value` as an int in [lo, hi]; TypeError for a non-integer (1.5, "3"), ValueError
    out of range."""
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(
            f"{name} must be an integer, not {type(value).__name__} {value!r}"
        ) from None
    if not lo <= number <= hi:
        raise ValueError(f"{name} must be in {lo}..{hi}, not {number}")
    return number


def integer_array_in_range(values, name: str, lo: int, hi: int) -> None:
    """Raise ValueError unless every element of an integer numpy array is in [lo, hi]."""
    if values.size and (int(values.min()) < lo or int(values.max()) > hi):
        bad = values[(values < lo) | (values > hi)][0]
        raise ValueError(f"{name} must be in {lo}..{hi}, not {int(bad)}")


def whole(value, name: str, lo: int, hi: int) -> int:
    """Like `integer`, but a float with no fractional part (a rate such as 125e6) is
    accepted; 1.5, nan and inf are not."""
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"{name} must be a whole number, not {value!r}")
        value = int(value)
    return integer(value, name, lo, hi)
