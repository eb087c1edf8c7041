"""`python -m experiments.tools.NAME` maintenance tools (not experiments)."""
