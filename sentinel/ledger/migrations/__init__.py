"""Alembic migrations of the ledger schema, run programmatically by ``Ledger.open``.

No ``alembic.ini`` is needed: ``sentinel.ledger.schema.upgrade`` builds the Alembic config in
code and hands ``env.py`` the open connection (under the schema lock). Version table:
``ledger_alembic_version``. Revisions: ``0001`` the first schema (version 1), ``0002`` Merkle
subtree hashes and checkpoints (version 2, backfills the tree of existing logs).
"""
