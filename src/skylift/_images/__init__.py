"""The image family: args (step checks, `Layer`), files (local files a step hashes), packages (Python-package steps)."""
