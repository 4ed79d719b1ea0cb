"""Signer identities (certificate subjectAltNames), matched one way for every method."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

from mlverify._internal.errors import UsageError


class IdentityRegexError(UsageError):
    """An identity regex that does not compile (front ends name where it came from)."""

    def __init__(self, regex: str, reason: str) -> None:
        super().__init__(f"identity regex {regex!r} is not a valid regular expression ({reason})")
        self.regex = regex


@lru_cache(maxsize=256)
def compile_identity_regex(regex: str) -> re.Pattern[str]:
    """The compiled identity regex; a neutral error (front ends name their option)."""
    try:
        return re.compile(regex)
    except (re.error, RecursionError, OverflowError) as e:
        raise IdentityRegexError(regex, str(e)) from None


def matching_identity(
    sans: Sequence[str], identities: Sequence[str], regex: str | None
) -> str | None:
    """The first SAN equal to one of ``identities`` or fully matching ``regex``."""
    pattern = compile_identity_regex(regex) if regex is not None else None
    for san in sans:
        if san in identities:
            return san
        if pattern is not None and pattern.fullmatch(san):
            return san
    return None
