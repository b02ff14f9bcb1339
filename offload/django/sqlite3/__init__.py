"""``ENGINE: "offload.django.sqlite3"``: Django's sqlite3 backend, off the hub.

See :mod:`offload.django`.
"""
