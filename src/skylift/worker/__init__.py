"""The worker agent: builds images and runs containers on one machine (`python -m skylift.worker`).

See `agent` for the command loop, `images`/`image_steps` for image builds, `runtime` for the
`ContainerRuntime` seam and `process_runtime` for its simplest implementation.
"""
