"""End-to-end tests: gateway simulators delivering over real HTTP to the running app and PostgreSQL."""
