//! The `allot` binary itself: first start, configuration errors, signals.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::TestDb;

fn allot(db: &TestDb) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_allot"));
    command
        .env_clear()
        .env("DATABASE_URL", db.url())
        .env("ALLOT_LOG", "info")
        .env("ALLOT_WORKERS", "1");
    command
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn run(command: &mut Command) -> Output {
    command.output().expect("allot runs")
}

#[test]
fn openapi_prints_the_committed_document() {
    let db = TestDb::new();
    let output = run(allot(&db).arg("openapi"));
    assert!(output.status.success());
    assert_eq!(
        text(&output.stdout),
        include_str!("../../openapi/openapi.json")
    );
}

#[test]
fn init_prints_a_generated_password_once_and_refuses_a_second_time() {
    let db = TestDb::new();
    let output = run(allot(&db).arg("init"));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("username: admin"), "{stdout}");
    let password_line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("password:"))
        .unwrap();
    assert!(
        password_line.trim_start()["password:".len()..].trim().len() >= 20,
        "{stdout}"
    );

    let again = run(allot(&db).arg("init"));
    assert_eq!(again.status.code(), Some(1));
    assert!(!text(&again.stdout).contains("password"));
    assert!(text(&again.stderr).contains("already has an owner"));
}

#[test]
fn a_first_start_announces_the_admin_and_later_starts_do_not() {
    let db = TestDb::new();
    // An occupied port makes serve stop right after preparing the database.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let first = run(allot(&db)
        .env("ALLOT_LISTEN", &listen)
        .env("ALLOT_ADMIN_USERNAME", "root-admin"));
    assert_eq!(first.status.code(), Some(2));
    assert!(text(&first.stdout).contains("username: root-admin"));
    assert!(text(&first.stdout).contains("shown once"));
    let stderr = text(&first.stderr);
    assert!(
        stderr.contains("allot: ALLOT_LISTEN: cannot listen on"),
        "{stderr}"
    );

    let second = run(allot(&db).env("ALLOT_LISTEN", &listen));
    assert_eq!(second.status.code(), Some(2));
    assert_eq!(text(&second.stdout), "");
}

#[test]
fn bad_configuration_stops_start_up_with_exit_2_and_one_line_naming_the_setting() {
    let db = TestDb::new();
    let cases: [(&str, &str, &str); 6] = [
        ("ALLOT_LISTEN", "not-an-address", "ALLOT_LISTEN"),
        ("ALLOT_JWT_SECRET", "c2hvcnQ=", "ALLOT_JWT_SECRET"),
        ("ALLOT_POOL_SIZE", "0", "ALLOT_POOL_SIZE"),
        ("ALLOT_LOG", "allot=loud", "ALLOT_LOG"),
        ("ALLOT_ADMIN_PASSWORD", "short", "ALLOT_ADMIN_PASSWORD"),
        (
            "DATABASE_URL",
            "postgres://allot@127.0.0.1:1/none",
            "DATABASE_URL",
        ),
    ];
    for (variable, value, named) in cases {
        let output = run(allot(&db)
            .env("ALLOT_LISTEN", "127.0.0.1:0")
            .env(variable, value));
        assert_eq!(
            output.status.code(),
            Some(2),
            "{variable}={value}: {}",
            text(&output.stderr)
        );
        let stderr = text(&output.stderr);
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("allot: "))
            .collect();
        assert_eq!(lines.len(), 1, "{variable}={value}: one line, got {stderr}");
        assert!(lines[0].contains(named), "{variable}={value}: {stderr}");
    }
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let db = TestDb::new();
    let mut child = allot(&db)
        .env("ALLOT_LISTEN", "127.0.0.1:0")
        .env("ALLOT_ADMIN_PASSWORD", "a long enough password")
        .env("ALLOT_SHUTDOWN_TIMEOUT", "5")
        .env("ALLOT_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    // JSON logs: the line announcing the server names the port it bound.
    let port = lines
        .by_ref()
        .map_while(Result::ok)
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(&line).ok())
        .find(|event| event["message"] == "serving")
        .and_then(|event| event["port"].as_u64())
        .expect("the server announces its port");
    // Once it answers, its signal handlers are in place.
    let health = std::net::TcpStream::connect(("127.0.0.1", port as u16)).and_then(|mut stream| {
        use std::io::{Read, Write};
        stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    });
    assert!(health.unwrap().starts_with("HTTP/1.1 200"));
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still running after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
