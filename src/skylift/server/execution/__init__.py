"""Inputs and containers: the catalog, queues, calls, dispatch, tasks, workers, images,
and the loops that drive them."""
