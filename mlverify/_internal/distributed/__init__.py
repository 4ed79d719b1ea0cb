"""Distributed verification: job keys, the worker pipeline, the Dramatiq queue, back-fills."""
