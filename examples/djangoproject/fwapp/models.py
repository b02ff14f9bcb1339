"""One model, with a unique column so that IntegrityError can be shown."""

from django.db import models


class Item(models.Model):
    tag = models.CharField(max_length=40, unique=True)
    n = models.IntegerField(default=0)
    data = models.JSONField(default=dict)
