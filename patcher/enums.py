"""Str-valued enums: members in the code, their value on screen and in --json."""

from __future__ import annotations

from enum import Enum


class TextEnum(str, Enum):
    """Compares equal to its value and prints as it (f-strings too, on every Python)."""

    def __str__(self) -> str:
        return self.value
