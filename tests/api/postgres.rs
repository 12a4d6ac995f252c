//! The API tests on PostgreSQL: `DATABASE_URL`, or a throwaway server.

backend_suite!(crate::helpers::Backend::Postgres);
