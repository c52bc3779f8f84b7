"""The `skylift` command line (mirrors `modal`): one module per command group."""
