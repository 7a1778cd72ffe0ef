"""Base-58 as the course designs it: the 62 alphanumerics without the look-alikes 0, O, I and l.

Digits are most significant first, `1` is zero: 2468135791013 encodes to `27qMi57J`.
"""

from __future__ import annotations

ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
BASE = len(ALPHABET)
_VALUE = {c: i for i, c in enumerate(ALPHABET)}


def encode(number: int) -> str:
    """The base-58 digits of a non-negative integer (0 is `1`)."""
    if isinstance(number, bool) or not isinstance(number, int) or number < 0:
        raise ValueError(f"base-58 encodes non-negative integers, got {number!r}")
    digits = []
    while True:
        number, digit = divmod(number, BASE)
        digits.append(ALPHABET[digit])
        if number == 0:
            return "".join(reversed(digits))


def decode(text: str) -> int:
    """The exact inverse of `encode`; ValueError naming the first character outside the alphabet."""
    if not text:
        raise ValueError("an empty string is not a base-58 number")
    number = 0
    for position, char in enumerate(text):
        value = _VALUE.get(char)
        if value is None:
            raise ValueError(f"{char!r} at position {position} is not a base-58 digit (no 0, O, I, l, +, /)")
        number = number * BASE + value
    return number


def is_canonical(text: str) -> bool:
    """Whether `text` is exactly what `encode` would make of its value (all digits, no leading zero `1`)."""
    return bool(text) and all(c in _VALUE for c in text) and (text == "1" or text[0] != "1")
