"""Stage 2: hash a model tree into an OMS manifest."""
