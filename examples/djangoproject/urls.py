"""One view: a query that takes ``?sleep=`` seconds on the server, and the backend's session id."""

from django.db import connection
from django.http import JsonResponse
from django.urls import path


def query(request):
    seconds = float(request.GET.get("sleep", "0"))
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_sleep(%s), pg_backend_pid()", [seconds])
        else:
            cursor.execute("SELECT SLEEP(%s), CONNECTION_ID()", [seconds])
        session = cursor.fetchone()[1]
    return JsonResponse({"session": session})


urlpatterns = [path("query", query)]
