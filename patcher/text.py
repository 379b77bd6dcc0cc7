"""Keras source files as text.

Every Keras release ships its sources as UTF-8. Bytes that are not were put
there by hand since (an editor saving in Latin-1): the commands that must read
such a file as text say which file, where, and what to do, in one line; `diff`
shows them as ``\\xNN`` escapes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from patcher.environment import Flavour


def where_not_utf8(data: bytes) -> str | None:
    """None for UTF-8 text; else where its first other byte is: "byte 0xe9 on line 812"."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        return f"byte 0x{data[error.start]:02x} on line {line}"
    return None


def not_utf8(flavour: Flavour, relative: str, where: str) -> str:
    """What is wrong with such a file, and the fix: the reinstall that puts the released bytes back."""
    return (
        f"{relative} of {flavour.key} is not UTF-8 text ({where}), as no Keras release ships it: it was edited "
        f"since it was installed; reinstall it with `{flavour.reinstall_command}`"
    )


def readable(data: bytes) -> str:
    """The text, with any byte that is not UTF-8 shown as a ``\\xNN`` escape."""
    return data.decode("utf-8", errors="backslashreplace")
