"""Small private helpers, one module per subject (never a grab-bag)."""
