//! The stock sea-orm-migration CLI over Fawkes' migrations.
//!
//! Run: `DATABASE_URL=sqlite://fawkes.db cargo run -p migration --features cli -- status` (or `up`, `down`,
//! `fresh`, …). `fawkes migrate` does the same through the server's own configuration.

#[tokio::main]
async fn main() {
    sea_orm_migration::cli::run_cli(migration::Migrator).await;
}
