"""Loss functions, one file per method; each cites the paper equation it implements."""
