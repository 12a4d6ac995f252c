//! The API tests on the embedded SQLite store, each on a temporary file of its own.

backend_suite!(crate::helpers::Backend::Sqlite);
