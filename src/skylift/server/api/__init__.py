"""RPC handlers of `_protocol/api.py` for apps, calls, containers, tasks, workers and logs, by group."""
