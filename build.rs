// Rebuild when a migration changes: `sqlx::migrate!` embeds `migrations/` (PostgreSQL) and
// `migrations/sqlite/` at compile time.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
