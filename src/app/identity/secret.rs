use std::path::{Path, PathBuf};

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::domain::{MIN_SECRET_BYTES, VisitorSecret};
use crate::store::Store;

/// The key file that holds the generated visitor secret of the embedded store: beside the
/// database file, named after it (`reader-reactions.db` → `reader-reactions.key`), so that a
/// copy of the database files (`reader-reactions.db*`) does not take the key with it.
pub fn key_file_for(database_file: &Path) -> PathBuf {
    database_file.with_extension("key")
}

/// The visitor secret in force: `VISITOR_SECRET` when set; else, on the embedded store, the key
/// file beside the database (created with mode 0600 on the first start, holding the secret an
/// earlier version kept in the database if there is one, which is then deleted there, so
/// existing visitors stay recognised); else, on PostgreSQL, the secret kept in the database,
/// with a warning that a copy of the database can then test guesses.
pub async fn resolve_secret(
    configured: Option<VisitorSecret>,
    store: &Store,
) -> anyhow::Result<VisitorSecret> {
    if let Some(secret) = configured {
        return Ok(secret);
    }
    let Some(database_file) = store.database_file() else {
        if store.is_postgres() {
            tracing::warn!(
                "VISITOR_SECRET is not set: the generated visitor secret is kept in the database, so a copy \
                 of the database can test guesses of visitor ids, addresses and browsers; set VISITOR_SECRET"
            );
        }
        return store
            .visitor_secret()
            .await
            .context("while loading the visitor secret from the database (or set VISITOR_SECRET)");
    };
    let key_file = key_file_for(database_file);
    let secret = match read_key_file(&key_file)? {
        Some(secret) => secret,
        None => {
            // The upgrade path: an earlier version kept the generated secret in the database.
            let moved = store.stored_visitor_secret().await.context("while looking for a visitor secret")?;
            let (candidate, from) = match moved {
                Some(secret) => (secret, "moved from the database"),
                None => (VisitorSecret::generate(), "generated"),
            };
            let secret = create_key_file(&key_file, &candidate)?;
            tracing::info!(key_file = %key_file.display(), "visitor secret {from} into the key file");
            secret
        }
    };
    // Only once the key file holds it (and another instance may have written it first: the file
    // wins), so a crash in between loses nothing.
    store.forget_visitor_secret().await.context("while deleting the visitor secret from the database")?;
    Ok(secret)
}

fn read_key_file(path: &Path) -> anyhow::Result<Option<VisitorSecret>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("while reading the key file {}", path.display())),
    };
    let bytes =
        STANDARD.decode(text.trim()).ok().filter(|bytes| bytes.len() >= MIN_SECRET_BYTES).with_context(
            || {
                format!(
                    "the key file {} is damaged: it must hold at least {MIN_SECRET_BYTES} bytes in base64",
                    path.display()
                )
            },
        )?;
    Ok(Some(VisitorSecret::from_bytes(bytes)))
}

/// Writes `secret` to `path` (mode 0600) unless the file exists, and answers the secret the file
/// holds. Written to a temporary file and linked into place, so the key file is whole or absent,
/// and of two instances starting at once the first one's secret wins.
fn create_key_file(path: &Path, secret: &VisitorSecret) -> anyhow::Result<VisitorSecret> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;

    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".{}.tmp", std::process::id()));
    let temporary = PathBuf::from(temporary);
    let written = (|| {
        let mut file =
            std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temporary)?;
        file.write_all(format!("{}\n", STANDARD.encode(secret.expose())).as_bytes())?;
        file.sync_all()?;
        std::fs::hard_link(&temporary, path)
    })();
    let _ = std::fs::remove_file(&temporary);
    match written {
        Ok(()) => Ok(secret.clone()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            read_key_file(path)?.with_context(|| format!("the key file {} vanished", path.display()))
        }
        Err(e) => Err(e).with_context(|| format!("while creating the key file {}", path.display())),
    }
}
