"""Stage: signed in-toto attestations (provenance, datasets, scan results)."""
