"""One error hierarchy for the whole tool.

Every error carries a one-line human diagnostic that names the file, what was
expected, what was found and what to do next. The CLI prints ``str(error)`` and
exits with the error's ``exit_code``; nothing else is ever shown to a user.
"""

from __future__ import annotations


class MlverifyError(Exception):
    """Base class: a failure the user can act on, with a one-line message."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = " ".join(message.split())
        self.hint = hint
        super().__init__(self.message)

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}; {self.hint}"
        return self.message


class UsageError(MlverifyError):
    """The command was called with options that cannot work together."""


class InputError(MlverifyError):
    """An input file or directory is missing, unreadable or malformed."""


class VerificationError(MlverifyError):
    """Evidence was read but does not hold: bad signature, changed files, ..."""

    exit_code = 1


class SignatureNotFoundError(VerificationError):
    """No signature where one was expected."""


class UntrustedSignerError(VerificationError):
    """A signature is present but no trusted signer made it."""


class ArtifactMismatchError(VerificationError):
    """The signature is valid but the artifact's bytes differ from what was signed."""
