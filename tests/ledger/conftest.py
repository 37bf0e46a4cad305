"""A PostgreSQL server for the ledger tests (skipped with a reason outside CI when the binaries are absent)."""

from __future__ import annotations

import pytest

from tests.gateway.helpers import fresh_database, shared_postgres


@pytest.fixture(scope="session")
def postgres_base() -> str:
    return shared_postgres()


@pytest.fixture()
def postgres_url(postgres_base: str) -> str:
    return fresh_database(postgres_base)
