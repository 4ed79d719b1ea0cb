"""``mlverify serve``: the admission service (HTTP API, Kubernetes, registry, Harbor).

Starlette (ASGI) served by uvicorn: TLS, async I/O for many slow clients, and the
checks themselves (CPU and disk bound) on a bounded thread pool. Imported only by
``mlverify serve``.
"""
