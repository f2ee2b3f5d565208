"""The core: settings, database, migrations, the ledger, the HTTP app and the `payrecon` CLI."""
