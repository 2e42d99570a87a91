//! Fawkes database migrations.
//!
//! [`Migrator`] lists every migration in order. The server runs pending ones at start-up and
//! exposes them as `fawkes migrate up|down|status`; this crate's own binary is the stock
//! sea-orm-migration CLI for the same list.

// `MigrationTrait` is declared with an elided `SchemaManager` lifetime through async-trait;
// spelling `<'_>` in the impls no longer matches it, so the idiom lint is relaxed here.
#![allow(elided_lifetimes_in_paths)]

pub use sea_orm_migration::prelude::*;

mod m20261121_000001_create_users;
mod m20261121_000002_create_mails;
mod m20261121_000003_create_token_revocations;
mod m20261121_000004_create_conversations_and_messages;
mod m20261128_000005_add_token_revocation_exceptions;

/// The ordered list of Fawkes migrations.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261121_000001_create_users::Migration),
            Box::new(m20261121_000002_create_mails::Migration),
            Box::new(m20261121_000003_create_token_revocations::Migration),
            Box::new(m20261121_000004_create_conversations_and_messages::Migration),
            Box::new(m20261128_000005_add_token_revocation_exceptions::Migration),
        ]
    }
}
