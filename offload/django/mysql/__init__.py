"""``ENGINE: "offload.django.mysql"``: Django's mysql backend, off the hub.

See :mod:`offload.django`.
"""
