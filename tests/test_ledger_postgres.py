"""The PostgreSQL ledger's own cases: its schema and migrations (several instances starting at once, a newer or a
foreign schema), an unreachable database at start-up, the password kept out of every message, and psycopg left
unimported when no database URL is set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from server.jobs.ledger import SCHEMA_VERSION, LedgerError
from server.settings import Settings, SettingsError
from tests.helpers import INITIALIZED, clean_env, initialize_request, jsonrpc_line
from tests.postgres import open_target
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[1]


def _query(url: str, sql: str) -> list[tuple[object, ...]]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(sql)
        return cursor.fetchall() if cursor.description else []


def _tables(url: str) -> list[tuple[object, ...]]:
    return _query(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")


def test_a_fresh_database_gets_the_current_schema(postgres_url: str) -> None:
    with open_target(postgres_url) as ledger:
        ledger.begin_submit("fal-ai/x", {})
    assert _tables(postgres_url) == [("fal_mcp_jobs",), ("fal_mcp_jobs_prices",), ("fal_mcp_schema",)]
    assert _query(postgres_url, "SELECT version FROM fal_mcp_schema") == [(SCHEMA_VERSION,)]
    columns = {
        name: kind
        for name, kind in _query(
            postgres_url,
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'fal_mcp_jobs'",
        )
    }
    # 8-byte times: REAL would round today's epoch seconds to about half a minute
    assert columns["submitted_at"] == columns["watch_until"] == "double precision"


STARTER = """
import sys, time
from pathlib import Path
from tests.postgres import open_target
url, go = sys.argv[1], Path(sys.argv[2])
while not go.exists():
    time.sleep(0.001)
with open_target(url) as ledger:
    ledger.begin_submit("fal-ai/x", {"started": True})
print("up", flush=True)
"""


def test_four_instances_starting_at_once_on_an_empty_database(postgres_url: str, tmp_path: Path) -> None:
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    starters = [
        subprocess.Popen(
            [sys.executable, "-c", STARTER, postgres_url, str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(4)
    ]
    time.sleep(1.0)  # every interpreter is up and waiting on the go file
    go.touch()
    for starter in starters:
        out, err = starter.communicate(timeout=60)
        assert (starter.returncode, out.strip()) == (0, "up"), err
    assert _query(postgres_url, "SELECT version FROM fal_mcp_schema") == [(SCHEMA_VERSION,)]  # one row, current
    assert _query(postgres_url, "SELECT count(*) FROM fal_mcp_jobs") == [(4,)]


def test_a_newer_schema_is_refused_and_left_unchanged(postgres_url: str) -> None:
    open_target(postgres_url).close()
    _query(postgres_url, f"UPDATE fal_mcp_schema SET version = {SCHEMA_VERSION + 1}")
    _query(postgres_url, "ALTER TABLE fal_mcp_jobs ADD COLUMN from_the_future TEXT")
    with pytest.raises(LedgerError) as caught:
        open_target(postgres_url)
    message = str(caught.value)
    assert f"newer fal-queue-mcp (schema {SCHEMA_VERSION + 1}" in message and "upgrade" in message
    assert "FAL_MCP_DATABASE_URL" in message
    assert _query(postgres_url, "SELECT version FROM fal_mcp_schema") == [(SCHEMA_VERSION + 1,)]


def test_a_foreign_jobs_table_is_refused_and_left_unchanged(postgres_url: str) -> None:
    _query(postgres_url, "CREATE TABLE fal_mcp_jobs (mine TEXT); INSERT INTO fal_mcp_jobs VALUES ('kept')")
    with pytest.raises(LedgerError, match="not a fal-queue-mcp job ledger"):
        open_target(postgres_url)
    assert _tables(postgres_url) == [("fal_mcp_jobs",)]
    assert _query(postgres_url, "SELECT mine FROM fal_mcp_jobs") == [("kept",)]


def test_an_unreachable_database_names_the_variable_but_not_the_password(psycopg_installed: None) -> None:
    url = f"postgresql://fal:s3cret-Passw0rd@127.0.0.1:{free_port()}/jobs"
    with pytest.raises(LedgerError) as caught:
        open_target(url, connect_timeout=2)
    message = str(caught.value)
    assert "FAL_MCP_DATABASE_URL" in message and "postgresql://fal@127.0.0.1:" in message
    assert "s3cret-Passw0rd" not in message


def test_start_up_stops_on_an_unreachable_database(psycopg_installed: None, tmp_path: Path) -> None:
    url = f"postgresql://fal:s3cret-Passw0rd@127.0.0.1:{free_port()}/jobs"
    env = clean_env(UNIAPI_KEY="k", FAL_MCP_DATABASE_URL=url, FAL_MCP_CONNECT_TIMEOUT="2")
    result = subprocess.run(
        [sys.executable, "-m", "server", "--transport", "http", "--port", str(free_port())],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "FAL_MCP_DATABASE_URL" in result.stderr and "cannot use the PostgreSQL job ledger" in result.stderr
    assert "s3cret-Passw0rd" not in result.stderr + result.stdout


def test_the_database_url_is_a_secret_with_a_checked_scheme() -> None:
    url = "postgresql://fal:s3cret%2FPassw0rd@db.internal:5432/jobs"
    settings = Settings.from_env({"FAL_MCP_DATABASE_URL": url})
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings.model_dump())
    assert {"s3cret%2FPassw0rd", "s3cret/Passw0rd"} <= set(settings.secrets())
    assert "postgresql" not in settings.secrets()  # only the password is redacted, not every word of the URL
    with pytest.raises(SettingsError, match="FAL_MCP_DATABASE_URL") as caught:
        Settings.from_env({"FAL_MCP_DATABASE_URL": "mysql://root:hunter22@db/jobs"})
    assert "hunter22" not in str(caught.value)


def test_a_database_url_without_the_driver_says_what_to_install(tmp_path: Path) -> None:
    """Without the [postgres] extra (here a psycopg that cannot be loaded shadows any installed one), start-up stops
    with the extra to install, and the password stays out of the message."""
    shadow = tmp_path / "shadow" / "psycopg"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('psycopg is missing here')\n")
    url = f"postgresql://fal:s3cret-Passw0rd@127.0.0.1:{free_port()}/jobs"
    env = clean_env(UNIAPI_KEY="k", FAL_MCP_DATABASE_URL=url)
    env["PYTHONPATH"] = f"{shadow.parent}{os.pathsep}{env['PYTHONPATH']}"
    result = subprocess.run(
        [sys.executable, "-m", "server", "--transport", "http", "--port", str(free_port())],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "FAL_MCP_DATABASE_URL" in result.stderr and 'pip install "fal-queue-mcp[postgres]"' in result.stderr
    assert "s3cret-Passw0rd" not in result.stderr + result.stdout


def test_locations_in_messages_carry_no_password(psycopg_installed: None) -> None:
    from server.jobs.ledger.postgres import safe_location

    assert safe_location("postgresql://u:pw@h:5433/db?sslmode=require&password=x") == "postgresql://u@h:5433/db"
    assert safe_location("postgres://h/db") == "postgres://h/db"


def test_psycopg_is_not_imported_without_a_database_url(tmp_path: Path) -> None:
    """A stdio server on the SQLite ledger serves tools/list and a ledger call without importing psycopg."""
    env = clean_env(UNIAPI_KEY="k", FAL_MCP_BASE_URL="http://127.0.0.1:9", FAL_MCP_STATE_DIR=str(tmp_path))
    call = {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "list_fal_jobs", "arguments": {}}}
    messages = [initialize_request("probe"), INITIALIZED, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, call]
    process = subprocess.Popen(
        [sys.executable, "-X", "importtime", "-m", "server"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(b"".join(jsonrpc_line(message) for message in messages))
    process.stdin.flush()
    answers: dict[int, dict[str, object]] = {}
    while len(answers) < 3:
        line = process.stdout.readline()
        assert line, "the server stopped"
        message = json.loads(line)
        if "id" in message:
            answers[message["id"]] = message
    listed = answers[3]["result"]
    assert isinstance(listed, dict) and listed.get("isError") is not True
    process.stdin.close()
    process.stdin = None  # closed: the server ends at end of input
    _, err = process.communicate(timeout=30)
    imported = err.decode()
    assert "server.jobs.ledger.sqlite" in imported  # the ledger was used
    assert "psycopg" not in imported


def test_a_schema_3_database_gets_each_job_s_route_family(postgres_url: str) -> None:
    """Schema 4 records the route family beside the route: a job made before it gets the one its route names."""
    from server.jobs.ledger.postgres_schema import DIALECT, VERSION_TABLE
    from server.jobs.ledger.sql import MIGRATIONS

    steps = [statement for migration in MIGRATIONS[:3] for statement in DIALECT.migration(migration)]
    for statement in [
        *steps,
        f"CREATE TABLE {VERSION_TABLE} (version INTEGER NOT NULL)",
        f"INSERT INTO {VERSION_TABLE} (version) VALUES (3)",
        *(
            f"INSERT INTO {DIALECT.table} (request_id, endpoint_id, state, input, submitted_at, updated_at)"
            f" VALUES ('{rid}', '{route}', 'submitted', '{{}}', 1.0, 1.0)"
            for rid, route in [
                ("a", "fal-ai/x"),
                ("831922", "kling/v1/videos/text2video"),
                ("4f3a", "luma/generations"),
            ]
        ),
    ]:
        _query(postgres_url, statement)
    with open_target(postgres_url) as ledger:
        assert [(row.request_id, row.route_family) for row in ledger.unfinished()] == [
            ("a", "fal"), ("831922", "kling"), ("4f3a", "luma")
        ]  # fmt: skip
    assert _query(postgres_url, f"SELECT version FROM {VERSION_TABLE}") == [(SCHEMA_VERSION,)]
