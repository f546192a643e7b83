//! `ALLOT_SECRET_KEY`: given, generated beside an SQLite database, or refused.

use allot::startup::{self, Prepared};

use crate::helpers::{TestDb, test_config};

fn refusal(result: Result<Prepared, startup::StartupError>) -> startup::StartupError {
    match result {
        Ok(_) => panic!("start-up went on"),
        Err(err) => err,
    }
}

#[test]
fn postgresql_without_a_key_refuses_to_start_naming_the_setting() {
    // Refused before the database is opened: nothing listens on port 1.
    let mut config = test_config("postgres://allot@127.0.0.1:1/none");
    config.secret_key = None;
    let err = refusal(startup::prepare(&config));
    assert_eq!(err.setting, "ALLOT_SECRET_KEY");
    assert!(err.message.contains("openssl rand -base64 32"), "{err}");
}

#[test]
fn sqlite_without_a_key_makes_one_beside_the_database_and_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().join("allot.db").to_string_lossy().into_owned();
    let mut config = test_config(&url);
    config.secret_key = None;
    let first = startup::prepare(&config).expect("the first start");
    let key_file = dir.path().join("allot.db.secret-key");
    let mode = std::os::unix::fs::PermissionsExt::mode(&key_file.metadata().unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "only the owner reads the key");
    let sealed = first.sealer.seal("the password", "test:place");
    drop(first);
    let second = startup::prepare(&config).expect("the second start");
    assert_eq!(
        second.sealer.open(&sealed, "test:place").unwrap(),
        "the password",
        "the second start read the same key"
    );
    // A key given explicitly is another key: what the generated one sealed does not open.
    let given = startup::prepare(&test_config(&url)).expect("a start with a key");
    assert!(given.sealer.open(&sealed, "test:place").is_err());
}

#[test]
fn a_damaged_key_file_refuses_to_start() {
    let db = TestDb::new();
    if !matches!(db, TestDb::Sqlite { .. }) {
        return;
    }
    std::fs::write(format!("{}.secret-key", db.url()), "not a key\n").unwrap();
    let mut config = test_config(db.url());
    config.secret_key = None;
    let err = refusal(startup::prepare(&config));
    assert_eq!(err.setting, "ALLOT_SECRET_KEY");
    assert!(err.message.contains("not a key"), "{err}");
}
