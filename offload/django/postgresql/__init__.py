"""``ENGINE: "offload.django.postgresql"``: Django's postgresql backend, off the hub.

See :mod:`offload.django`.
"""
