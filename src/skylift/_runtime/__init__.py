"""The process inside every container: `python -m skylift._runtime` (see `entrypoint`).

Kept light: it imports only what it needs to start, since every cold start pays for it.
"""
