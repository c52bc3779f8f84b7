"""The volume family: manifest (pure), files (disk), transfer (blocks), mount (commit/reload in containers)."""
