"""A tiny Django project on an offload.django backend, for the tests and as an example.

Pick the database with environment variables: ``FW_ENGINE`` (``postgresql``,
``mysql`` or ``sqlite3``), ``FW_DB_NAME``, ``FW_TEST_DB_NAME``,
``FW_CONN_MAX_AGE``.
"""

import os

ENGINE = os.environ.get("FW_ENGINE", "postgresql")
DATABASE = {
    "postgresql": {"HOST": "127.0.0.1", "PORT": "5432", "USER": "postgres", "NAME": "test"},
    "mysql": {"HOST": "127.0.0.1", "PORT": "3306", "USER": "root", "NAME": "test"},
    "sqlite3": {"NAME": os.environ.get("FW_DB_NAME", "/tmp/frameworks_django.sqlite3")},
}[ENGINE]
if "FW_DB_NAME" in os.environ and ENGINE != "sqlite3":
    DATABASE["NAME"] = os.environ["FW_DB_NAME"]
DATABASE["ENGINE"] = f"offload.django.{ENGINE}"
DATABASE["CONN_MAX_AGE"] = int(os.environ.get("FW_CONN_MAX_AGE", "0"))
DATABASE["OPTIONS"] = {"connect_timeout": 5} if ENGINE != "sqlite3" else {}
if "FW_TEST_DB_NAME" in os.environ:
    DATABASE["TEST"] = {"NAME": os.environ["FW_TEST_DB_NAME"]}

DATABASES = {"default": DATABASE}
INSTALLED_APPS = ["fwapp"]
SECRET_KEY = "frameworks-example-not-secret"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
ROOT_URLCONF = "urls"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
