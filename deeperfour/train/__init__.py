"""Training loops, one module per network; shared pieces in common.py."""
