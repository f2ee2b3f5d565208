"""Which failures a gateway's redelivery can cure, and which it cannot.

A webhook answered "retry later" comes back; that helps only when the failure was ours and
passing (the database restarting, a deadlock, a serialization conflict). A failure that the
same bytes will meet again — a value PostgreSQL cannot store, a constraint the event breaks,
a bug — would be retried until the gateway gives up and the delivery is lost. Those are held
instead (service/ingest.py): the raw request is stored and the gateway told to stop.
"""

from __future__ import annotations

import asyncpg

from service.db import UNAVAILABLE_ERRORS

# SQLSTATE classes a retry can cure: 08 connection, 40 transaction rollback (serialization,
# deadlock), 53 insufficient resources (disk full, out of memory, too many connections),
# 57 operator intervention (shutdown, statement timeout), 58 system error (I/O), XX internal.
_TRANSIENT_CLASSES = frozenset({"08", "40", "53", "57", "58", "XX"})
# …and single states of other classes: 55P03 lock_not_available, 55006 object_in_use.
_TRANSIENT_STATES = frozenset({"55P03", "55006"})


def retry_can_cure(error: BaseException) -> bool:
    """True for the database being away or busy; False for what the same delivery will hit again.

    Everything else is permanent: class 22 data exceptions (NUL in text, a number out of range),
    23 integrity violations (a check the event breaks), 42 (a statement our code got wrong), 54
    program limits (a payload nested too deep), and any exception that is not the database's.
    """
    if isinstance(error, UNAVAILABLE_ERRORS):
        return True
    if isinstance(error, asyncpg.PostgresError):
        state = str(getattr(error, "sqlstate", "") or "")
        return state[:2] in _TRANSIENT_CLASSES or state in _TRANSIENT_STATES
    return False


# SQLSTATE classes that mean "PostgreSQL cannot store this value": 22 data exception, 23 integrity
# constraint violation, 54 program limit exceeded.
_UNSTORABLE_CLASSES = frozenset({"22", "23", "54"})


def refused_by_postgres(error: BaseException) -> bool:
    """The database refused the data itself (as opposed to our statement, or a bug of ours)."""
    return isinstance(error, asyncpg.PostgresError) and str(getattr(error, "sqlstate", ""))[:2] in _UNSTORABLE_CLASSES
