"""Storage objects and blobs: Secrets, Volumes, Dicts, Queues, their store and RPC groups (docs/storage.md)."""
