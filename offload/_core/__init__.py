"""The engine room: thread primitives, the hub bridge, queue items, checks, pacing.

Nothing here imports a public module of offload; the public modules build on
these.
"""
