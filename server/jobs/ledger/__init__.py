"""The durable job ledger: one interface (`JobLedger`, in `base`), one SQL layer (`sql.SqlLedger`: the migrations,
the queries, written once), two backends that differ in dialect, transactions and change relay.

- `sqlite.SqliteLedger`: an embedded SQLite file, the default (one user, any number of processes on one machine);
- `postgres.PostgresLedger`: a PostgreSQL database shared by several server instances (a team or hosted
  deployment). Its module imports psycopg, an optional extra: import it only when a database URL is configured.

The composition root (`server.runtime.open_ledger`) picks the backend. `Ledger` is the SQLite backend's older name.
"""

from server.jobs.ledger.base import (
    SCHEMA_VERSION,
    STATES,
    JobLedger,
    JobRow,
    Lease,
    LedgerError,
    WaitClaim,
    new_instance_id,
)
from server.jobs.ledger.sqlite import SqliteLedger

Ledger = SqliteLedger

__all__ = [
    "SCHEMA_VERSION",
    "STATES",
    "JobLedger",
    "JobRow",
    "Lease",
    "Ledger",
    "LedgerError",
    "SqliteLedger",
    "WaitClaim",
    "new_instance_id",
]
