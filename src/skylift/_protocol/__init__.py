"""The wire contract every skylift process shares (see `api` for the method catalogue)."""
