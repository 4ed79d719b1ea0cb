"""One error hierarchy for the whole tool.

Every error carries a one-line ``message`` that names the file, what was expected and what
was found, an optional ``remedy`` (what to do next) and a stable ``code`` that callers
compare instead of message text. Messages never name a front end's spelling of a setting:
an error about a setting carries its neutral name (``setting="threshold"``) and each front end
renders it its own way (the CLI as ``--threshold``, a policy as its key, the HTTP API as its
field). The CLI prints :meth:`MlverifyError.render` and exits with ``exit_code``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

#: how a front end spells a neutral setting name; the default keeps the name
SettingNamer = Callable[[str], str]


def _as_is(setting: str) -> str:
    return setting


@dataclass(frozen=True)
class Remedy:
    """What the user can do: neutral text, optionally naming the setting that does it."""

    text: str
    setting: str | None = None

    def render(self, name: SettingNamer = _as_is) -> str:
        return f"{self.text} ({name(self.setting)})" if self.setting else self.text


class MlverifyError(Exception):
    """Base class: a failure the user can act on, with a one-line message."""

    #: stable identifier of the kind of failure (compare this, never the message)
    code: ClassVar[str] = "error"
    exit_code: ClassVar[int] = 2

    def __init__(
        self, message: str, *, remedy: Remedy | str | None = None, setting: str | None = None
    ) -> None:
        self.message = " ".join(message.split())
        self.remedy = Remedy(remedy) if isinstance(remedy, str) else remedy
        #: the neutral name of the setting this error is about (its subject), if any
        self.setting = setting
        super().__init__(self.message)

    def render(self, name: SettingNamer = _as_is) -> str:
        """The one line a front end shows, with settings spelled by ``name``."""
        text = f"{name(self.setting)}: {self.message}" if self.setting else self.message
        if self.remedy is not None:
            text = f"{text}; {self.remedy.render(name)}"
        return text

    def __str__(self) -> str:
        return self.render()


class UsageError(MlverifyError):
    """The call was made with options that cannot work together."""

    code = "usage"


class InputError(MlverifyError):
    """An input file or directory is missing, unreadable or malformed."""

    code = "input"


class VerificationError(MlverifyError):
    """Evidence was read but does not hold: bad signature, changed files, ..."""

    code = "verification"
    exit_code = 1


class SignatureNotFoundError(VerificationError):
    """No signature where one was expected."""

    code = "signature-not-found"


class UntrustedSignerError(VerificationError):
    """A signature is present but no trusted signer made it."""

    code = "untrusted-signer"


class ArtifactMismatchError(VerificationError):
    """The signature is valid but the artifact's bytes differ from what was signed.

    When raised by ``mlverify.verify``: ``verification`` is what the signatures established
    (who signed, the signed manifest) and ``diff`` the changed, missing and extra files.
    """

    code = "artifact-mismatch"
    verification: Any = None
    diff: Any = None
