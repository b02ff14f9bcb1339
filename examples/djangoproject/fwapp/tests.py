"""Run by Django's own test runner (``manage.py test fwapp``) against an offload backend."""

from django.db import IntegrityError, connection, transaction
from django.test import TestCase

from offload import dbapi

from .models import Item


class ItemTests(TestCase):
    def test_connection_is_offloaded(self):
        connection.ensure_connection()
        self.assertIsInstance(connection.connection, dbapi.Connection)

    def test_create_query_and_json(self):
        Item.objects.create(tag="a", n=1, data={"k": [1, 2]})
        self.assertEqual(Item.objects.get(tag="a").data, {"k": [1, 2]})

    def test_unique_violation(self):
        Item.objects.create(tag="dup")
        with self.assertRaises(IntegrityError), transaction.atomic():
            Item.objects.create(tag="dup")
        self.assertEqual(Item.objects.filter(tag="dup").count(), 1)
