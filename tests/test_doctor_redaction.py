"""The doctor never prints a secret: redact() unit forms, then end to end through the CLI.

End to end, each target carries a unique secret and goes to a real server
(PostgreSQL, MariaDB, Redis, nx-27017): where the credentials are wrong the
driver's own error message is printed, and it must be scrubbed too.  Every
form is checked in the text report, in ``--json`` and on stderr.
"""

import json
import os
import subprocess
import sys

import modes
import pytest
import services
from mongo_server import mongo_server_info, mongo_uri  # noqa: F401

from offload.doctor import redact
from offload.doctor.redact import scrub


@pytest.mark.parametrize(
    "target, shown",
    [
        ("host=db user=app password=hunter2 dbname=x", "host=db user=app password=*** dbname=x"),
        ("host=db password = 'a b\\'c' port=1", "host=db password=*** port=1"),
        (r"host=db user=u password=abc\ S3cretBS dbname=x", "host=db user=u password=*** dbname=x"),
        ("host=h password='a S3cretQ' dbname=x", "host=h password=*** dbname=x"),
        ("host=h sslpassword=S3cretSsl", "host=h sslpassword=***"),
        ("postgresql://app:hunter2@db:5432/x", "postgresql://app:***@db:5432/x"),
        ("postgresql://postgres:S3?cretQm@127.0.0.1/x", "postgresql://postgres:***@127.0.0.1/x"),
        ("postgresql://postgres:S3#cretHash@127.0.0.1/x", "postgresql://postgres:***@127.0.0.1/x"),
        ("postgresql://postgres:S3/cretSl@127.0.0.1/x", "postgresql://postgres:***@127.0.0.1/x"),
        ("postgresql://postgres:S3@cretAt@127.0.0.1/x", "postgresql://postgres:***@127.0.0.1/x"),
        (
            "postgresql://u@h/x?password=S3cretQp&sslmode=require",
            "postgresql://u@h/x?password=***&sslmode=require",
        ),
        ("redis://:hunter2@db:6379/0", "redis://:***@db:6379/0"),
        ("mongodb://app@db/?password=hunter2&w=1", "mongodb://app@db/?password=***&w=1"),
        (
            "mongodb://h/?tlsCertificateKeyFilePassword=S3cretTLS",
            "mongodb://h/?tlsCertificateKeyFilePassword=***",
        ),
        (
            "mongodb://u:p@h/?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:S3cretTok",
            "mongodb://u:***@h/?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:***",
        ),
        (
            "mongodb://h/?authMechanismProperties=SERVICE_NAME:mongodb,AWS_SESSION_TOKEN%3AS3cretTok2",
            "mongodb://h/?authMechanismProperties=SERVICE_NAME:mongodb,AWS_SESSION_TOKEN:***",
        ),
        ("mongodb://h1:1,h2:2/db?replicaSet=rs", "mongodb://h1:1,h2:2/db?replicaSet=rs"),
        ("postgresql://u:pw@[::1]:5432/db", "postgresql://u:***@[::1]:5432/db"),
        ("postgresql://u:S3cretV6@[::1/db", "postgresql://<redacted>"),
        ("host=db password='unterminated S3cretUn", "<redacted>"),
        ("mysql://app@db/x", "mysql://app@db/x"),
        ("/var/lib/app.db", "/var/lib/app.db"),
    ],
)
def test_redact(target, shown):
    assert redact(target) == shown


def test_scrub_hides_every_spelling_of_the_secret():
    target = "postgresql://app:p%40ss%2Fw0rdX@db/x"
    message = "FATAL: password p@ss/w0rdX (p%40ss%2Fw0rdX) rejected"
    assert scrub(message, target) == "FATAL: password *** (***) rejected"
    assert scrub("bad: abc S3cretBS", r"host=db password=abc\ S3cretBS") == "bad: ***"


def test_scrub_withholds_messages_about_an_unparseable_target():
    message = scrub("invalid dsn near S3cretV6", "postgresql://u:S3cretV6@[::1/db")
    assert "S3cretV6" not in message and "withheld" in message


# -- end to end ----------------------------------------------------------------------


def _doctor(*args):
    env = dict(os.environ, PYTHONPATH=modes.ROOT)
    return subprocess.run(
        [sys.executable, "-m", "offload", "doctor", *args],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
        cwd=modes.ROOT,
    )


PG = "127.0.0.1:5432"
MY = "127.0.0.1:3306"

# (option, target with a unique secret, how it must be shown, the secret).
# PostgreSQL trusts every local connection, so a password there is accepted
# (a row is printed) unless the role does not exist (an error is printed).
KV = "host=127.0.0.1 dbname=test user=postgres"
URI = "postgresql://postgres:{}@127.0.0.1:5432/test"
SHOWN = URI.format("***")
FORMS = [
    ("--postgres", KV + r" password=abc\ RdxSpace1", "password=***", "RdxSpace1"),
    ("--postgres", KV + " password='a RdxQuote2'", "password=***", "RdxQuote2"),
    ("--postgres", URI.format("Rdx?Qmark3"), SHOWN, "Qmark3"),
    ("--postgres", URI.format("Rdx#Hash4"), SHOWN, "Hash4"),
    ("--postgres", URI.format("Rdx/Slash5"), SHOWN, "Slash5"),
    ("--postgres", URI.format("Rdx@At6"), SHOWN, "At6"),
    ("--postgres", f"postgresql://doctor_no_role:RdxRole7@{PG}/test", "doctor_no_role:***@", "RdxRole7"),
    ("--postgres", "postgresql://u:RdxV6x8@[::1/db", "postgresql://<redacted>", "RdxV6x8"),
    ("--mysql", f"mysql://root:RdxWrong9@{MY}/test", f"mysql://root:***@{MY}/test", "RdxWrong9"),
    ("--mysql", f"mysql://root:Rdx/Sl#10@{MY}/test", f"mysql://root:***@{MY}/test", "Sl#10"),
    ("--redis", "redis://:RdxRedis11@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0", "RdxRedis11"),
]


def _mongo_forms(uri):
    host = uri.split("://")[1].split("/")[0]
    return [
        (
            "--mongo",
            f"mongodb://{host}/?directConnection=true&tls=true&tlsCertificateKeyFilePassword=RdxTls12",
            "tlsCertificateKeyFilePassword=***",
            "RdxTls12",
        ),
        (
            "--mongo",
            f"mongodb://AKIAX:RdxAws13@{host}/?directConnection=true&authMechanism=MONGODB-AWS"
            "&authMechanismProperties=AWS_SESSION_TOKEN:RdxTok13",
            "AWS_SESSION_TOKEN:***",
            "RdxTok13",
        ),
    ]


def _check_form(option, target, shown, secret):
    """Run the doctor on one form in text and --json; return the problems found."""
    problems = []
    for output in ("text", "json"):
        args = ["--patch", "none", option, target] + (["--json"] if output == "json" else [])
        proc = _doctor(*args)
        both = proc.stdout + proc.stderr
        label = f"{option} {shown!r} ({output})"
        if secret in both or secret in json.dumps(both):
            problems.append(f"{label}: the secret was printed:\n{both}")
        if "Traceback" in proc.stderr:
            problems.append(f"{label}: a traceback:\n{proc.stderr}")
        if shown not in both:
            problems.append(f"{label}: the redacted target is not shown:\n{both}")
        if output == "json":
            report = json.loads(proc.stdout)  # the report is still valid JSON
            if proc.returncode not in (0, 1) or (proc.returncode == 1) != bool(report["errors"]):
                problems.append(f"{label}: exit {proc.returncode} with errors {report['errors']}")
    return problems


@pytest.mark.slow
def test_no_secret_in_text_json_or_errors_against_real_servers(mongo_server_info):  # noqa: F811
    for port, name in ((5432, "PostgreSQL"), (3306, "MariaDB"), (6379, "Redis")):
        if not services.port_open("127.0.0.1", port):
            services.unavailable(f"{name} on 127.0.0.1:{port}")
    uri, reason = mongo_server_info
    if uri is None:
        services.unavailable(reason)
    problems = []
    for form in FORMS + _mongo_forms(uri):
        problems += _check_form(*form)
    assert not problems, "\n\n".join(problems)


def test_wrong_password_error_is_scrubbed_under_patch_all():
    if not services.port_open("127.0.0.1", 3306):
        services.unavailable("MariaDB on 127.0.0.1:3306")
    proc = _doctor("--mysql", f"mysql://root:RdxPatched14@{MY}/test")
    assert proc.returncode == 1
    assert "RdxPatched14" not in proc.stdout + proc.stderr
    assert f"{services.MYSQL_DRIVER}: could not connect to mysql://root:***@{MY}/test: " in proc.stderr
    assert "Access denied for user 'root'" in proc.stderr


def test_usage_errors_do_not_echo_credentials():
    proc = _doctor("--postgress", "host=db password=RdxUsage15")
    assert proc.returncode == 2
    assert "RdxUsage15" not in proc.stderr
    assert "unrecognized arguments: --postgress host=db password=***" in proc.stderr


def test_scrub_hides_pieces_of_a_password_a_driver_split_differently():
    # libpq ends the password at the first "@" and reads the rest as the host.
    target = "postgresql://postgres:Rdx@At6@127.0.0.1:5432/test"
    message = 'could not translate host name "At6@127.0.0.1" to address'
    assert scrub(message, target) == 'could not translate host name "***@127.0.0.1" to address'
