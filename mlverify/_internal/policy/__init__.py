"""Stage 6: policies over evidence, and the decision."""
