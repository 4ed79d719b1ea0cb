"""Key passwords: from an environment variable, else a prompt on a terminal."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import click


def password_source(env_var: str) -> Callable[[], bytes | None]:
    """A callable asked only if the key turns out to be encrypted."""

    def get() -> bytes | None:
        value = os.environ.get(env_var)
        if value:
            return value.encode()
        if sys.stdin.isatty():
            return str(click.prompt("Key password", hide_input=True)).encode()
        return None

    return get
