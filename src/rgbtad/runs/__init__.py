"""The run directory: what `rgbtad train` and `rgbtad import-actionformer` write and every later stage reads."""
