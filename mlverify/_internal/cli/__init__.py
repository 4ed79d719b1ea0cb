"""The ``mlverify`` command line.

Commands live in their own modules and are imported only when invoked, so
``mlverify --version`` and ``--help`` start fast (pre-commit runs us often).
Every error reaches the user as one line on stderr; exit codes are 0 success,
1 verification failed / findings, 2 usage or operational error.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from mlverify._internal.errors import MlverifyError
from mlverify._internal.version import __version__

#: command name -> "module:attribute"; modules are imported on first use.
COMMANDS: dict[str, str] = {
    "hash": "mlverify._internal.cli.hash_cmd:hash_command",
    "sign": "mlverify._internal.cli.sign_cmd:sign_command",
    "verify": "mlverify._internal.cli.verify_cmd:verify_command",
    "keygen": "mlverify._internal.cli.keygen_cmd:keygen_command",
    "verify-bundle": "mlverify._internal.cli.verify_bundle_cmd:verify_bundle_command",
    "trust": "mlverify._internal.cli.trust_cmd:trust_command",
    "scan": "mlverify._internal.cli.scan_cmd:scan_command",
    "attest": "mlverify._internal.cli.attest_cmd:attest_group",
    "check": "mlverify._internal.cli.check_cmd:check_command",
    "policy": "mlverify._internal.cli.policy_cmd:policy_group",
    "verify-attestation": (
        "mlverify._internal.cli.verify_attestation_cmd:verify_attestation_command"
    ),
    "oci": "mlverify._internal.cli.oci_cmd:oci_group",
    "serve": "mlverify._internal.cli.serve_cmd:serve_command",
    "report": "mlverify._internal.cli.report_cmd:report_command",
    "hf": "mlverify._internal.cli.hf_cmd:hf_group",
    "atlas": "mlverify._internal.cli.atlas_cmd:atlas_command",
    "bom": "mlverify._internal.cli.bom_cmd:bom_command",
    "posture": "mlverify._internal.cli.posture_cmd:posture_command",
    "worker": "mlverify._internal.cli.worker_cmd:worker_command",
    "backfill": "mlverify._internal.cli.backfill_cmd:backfill_command",
    "verdicts": "mlverify._internal.cli.verdicts_cmd:verdicts_command",
}

#: one-line summaries for `mlverify --help`, without importing the commands.
SUMMARIES: dict[str, str] = {
    "hash": "Hash a model file or directory into an OMS manifest.",
    "sign": "Sign a model into an OMS signature bundle.",
    "verify": "Verify a model against its OMS signature.",
    "keygen": "Write a new signing key pair.",
    "verify-bundle": "Verify any file against a Sigstore bundle, offline.",
    "trust": "Refresh the pinned Sigstore trusted root (the only networked command).",
    "scan": "Scan model files for code a loader would run, without running it.",
    "attest": "Write signed provenance (SLSA) or dataset attestations.",
    "check": "Decide allow or deny for artifacts: evidence, policy, every reason.",
    "policy": "Lint policy files and run their test cases.",
    "verify-attestation": "Verify an attestation's signer, subject and provenance rules.",
    "oci": "Push a model with its signature to an OCI registry.",
    "serve": "Run the admission service (HTTP API, Kubernetes, registry, Harbor).",
    "report": "Turn `check --format json` results into SARIF and a Markdown summary.",
    "hf": "Check, sign and upload a model to the Hugging Face Hub.",
    "atlas": "Show which MITRE ATLAS techniques the policies cover, and how.",
    "bom": "Write a CycloneDX 1.6 ML-BOM of a model from a check.",
    "posture": "Turn `check --format json` results into an HTML posture page.",
    "worker": "Verify queued jobs into the shared verdict store (distributed).",
    "backfill": "Queue verification of every model a directory or registry already holds.",
    "verdicts": "List the verdicts in a verdict store: what was decided, when and why.",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on demand."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        command: click.Command = getattr(importlib.import_module(module_name), attr)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, SUMMARIES.get(name, "")) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(
    __version__, "--version", prog_name="mlverify", message="%(prog)s %(version)s"
)
@click.option("-q", "--quiet", is_flag=True, help="Only the report and errors: no notes.")
@click.option("-v", "--verbose", is_flag=True, help="Also print details on stderr.")
def cli(quiet: bool, verbose: bool) -> None:
    """mlverify: verify machine-learning artifacts before you load them.

    Hash and sign models, check signatures and provenance, scan for code,
    and decide with a policy. Exit codes: 0 ok, 1 verification failed or
    findings, 2 usage or operational error. Colour and progress bars appear only on a
    terminal (NO_COLOR turns colour off).
    """
    from mlverify._internal.cli import ui

    ui.configure(quiet=quiet, verbose=verbose)


def flag_for(setting: str) -> str:
    """The CLI's spelling of a neutral setting name (``at_time`` -> ``--at-time``)."""
    return "--" + setting.replace("_", "-")


def fail(message: str, code: int = 2) -> None:
    from mlverify._internal.text import shown

    click.echo(f"mlverify: error: {shown(message)}", err=True)
    sys.exit(code)


def main(argv: list[str] | None = None) -> Any:
    """Console entry point: run the CLI, turning every error into one line."""
    from mlverify._internal.cli import ui

    try:
        # bytes hashed, on a terminal, once a command has worked for a second
        with ui.progress_bar("hashing", None):
            return cli.main(args=argv, prog_name="mlverify", standalone_mode=False)
    except MlverifyError as e:
        fail(e.render(flag_for), e.exit_code)
    except click.UsageError as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # bare `mlverify`: show the help
            click.echo(e.format_message(), err=True)
            sys.exit(2)
        cmd = e.ctx.command_path if e.ctx else "mlverify"
        fail(f"{e.format_message()} (see '{cmd} --help')")
    except click.ClickException as e:
        fail(e.format_message())
    except click.exceptions.Abort:
        fail("aborted")
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except BrokenPipeError:
        sys.exit(1)
    except Exception as e:  # a bug: still one line, traceback on demand
        if os.environ.get("MLVERIFY_DEBUG"):
            raise
        fail(f"internal error: {type(e).__name__}: {e} (set MLVERIFY_DEBUG=1 for a traceback)")
    return None
