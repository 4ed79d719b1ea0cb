"""`mlverify backfill`: queue what a directory or list of references holds (see
mlverify/_internal/distributed/backfill.py)."""

from __future__ import annotations

import os
import sys

import click


@click.command("backfill")
@click.argument("source")
@click.option("--queue", "queue_url", required=True, metavar="redis://HOST:PORT/DB")
@click.option("--store", "store_url", required=True, metavar="postgresql://...|sqlite:///PATH")
@click.option(
    "--policy", "policy_refs", multiple=True, metavar="FILE|DIR|builtin:NAME",
    help="Policy [default: $MLVERIFY_POLICY, else builtin:default]; the workers must use the same.",
)  # fmt: skip
@click.option("--max-outstanding", type=click.IntRange(1, 1_000_000), default=100,
              show_default=True, help="Jobs queued and not yet decided, at most.")  # fmt: skip
@click.option("--no-wait", is_flag=True, help="Return once everything is queued.")
@click.option("--plain-http", is_flag=True, help="Talk HTTP to registries (loopback always does).")
def backfill_command(
    source: str,
    queue_url: str,
    store_url: str,
    policy_refs: tuple[str, ...],
    max_outstanding: int,
    no_wait: bool,
    plain_http: bool,
) -> None:
    """Queue verification of every artifact in SOURCE that has no current verdict.

    SOURCE is a directory of models (each entry directly under it, file or directory,
    is one artifact; the workers need it under a --root), oci://HOST (a registry's
    catalog) or oci://HOST/REPO (every tag, queued by digest), hf-cache[:DIR] (every
    snapshot of the local Hugging Face cache) or a file of references (one oci://,
    hf:// or path per line). Resumable: a re-run skips what is decided. Progress
    on stderr; exit 0 when every artifact was queued (and, unless --no-wait, decided),
    2 when some could not be queued.
    """
    from mlverify._internal.distributed.backfill import backfill, references
    from mlverify._internal.distributed.broker import Queue
    from mlverify._internal.distributed.keys import Config
    from mlverify._internal.policy.model import load_policies
    from mlverify._internal.serve.store import open_store

    refs = list(policy_refs) or [os.environ.get("MLVERIFY_POLICY") or "builtin:default"]
    config = Config.of(load_policies(refs))
    store = open_store(store_url)
    queue = Queue(queue_url)
    try:
        roots, items = references(source, plain_http=plain_http)
        p = backfill(
            items, roots=roots, config=config, store=store, queue=queue,
            max_outstanding=max_outstanding, wait=not no_wait, plain_http=plain_http,
        )  # fmt: skip
    finally:
        queue.close()
        store.close()
    sys.exit(2 if p.failed else 0)
