"""Options shared by several commands (one definition each)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from mlverify._internal.manifest.hashing import HASH_TYPES
from mlverify._internal.manifest.manifest import DEFAULT_SHARD_SIZE, METHODS

F = TypeVar("F", bound=Callable[..., Any])

model_path_argument = click.argument(
    "path", type=click.Path(path_type=Path, exists=False, file_okay=True, dir_okay=True)
)


def ignore_options(f: F) -> F:
    f = click.option(
        "--ignore",
        "ignore",
        multiple=True,
        metavar="PATTERN",
        help="Leave out files matching PATTERN, relative to the model root (repeatable; "
        "a path, a directory or a glob such as '*.tmp').",
    )(f)
    f = click.option(
        "--allow-symlinks",
        is_flag=True,
        help="Follow symlinks that stay inside the model root (refused by default).",
    )(f)
    return f


def serialization_options(f: F) -> F:
    f = click.option(
        "--mode",
        type=click.Choice(METHODS),
        default="files",
        show_default=True,
        help="Hash whole files, or fixed-size shards of files (parallel within a file).",
    )(f)
    f = click.option(
        "--shard-size",
        type=click.IntRange(min=1),
        default=DEFAULT_SHARD_SIZE,
        show_default=True,
        help="Shard size in bytes for --mode shards.",
    )(f)
    f = click.option(
        "--hash",
        "hash_type",
        type=click.Choice(HASH_TYPES),
        default="sha256",
        show_default=True,
        help="File hash algorithm (the root digest is always SHA-256).",
    )(f)
    f = click.option(
        "--cache/--no-cache",
        "use_cache",
        default=False,
        show_default=True,
        help="Reuse digests of files whose inode, size and timestamps are unchanged "
        "(faster re-runs; see docs/digest-cache.md for the trade-off).",
    )(f)
    return f


def sigstore_signing_options(f: F) -> F:
    """--sigstore, --identity-token, --staging (keyless signing)."""
    f = click.option(
        "--staging",
        is_flag=True,
        help="Sigstore: use the staging instance (for testing).",
    )(f)
    f = click.option(
        "--identity-token",
        metavar="TOKEN",
        envvar="MLVERIFY_IDENTITY_TOKEN",
        help="Sigstore: OIDC identity token to use [env MLVERIFY_IDENTITY_TOKEN; default: "
        "ambient credentials].",
    )(f)
    f = click.option(
        "--sigstore",
        "use_sigstore",
        is_flag=True,
        help="Sign keyless with Sigstore (Fulcio certificate + Rekor entry); needs network "
        "and an OIDC identity (ambient GitHub Actions credentials or --identity-token).",
    )(f)
    return f


#: `--format text|json` for commands whose report is a short text or a JSON document
text_or_json_option = click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Report format on stdout.",
)


def parse_key_values(values: tuple[str, ...], option: str = "--param") -> dict[str, str]:
    """``("k=v", ...)`` as a dict; a value without ``=`` is a usage error."""
    from mlverify._internal.errors import UsageError

    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{option} {item!r}: expected KEY=VALUE")
        out[key] = value
    return out
