//! The `allot` command line: serve (the default), init, migrate, openapi.

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use allot::config::Config;
use allot::startup::{self, Application, StartupError};
use allot::{api, init, telemetry};

#[derive(Debug, Parser)]
#[command(
    name = "allot",
    version,
    about = "Licence allocation down a tree of resellers to customers."
)]
struct Cli {
    #[command(flatten)]
    config: Config,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API (the default). Migrates the database, and on an empty one creates the
    /// owner node and its first admin.
    Serve,
    /// Create the owner node and its first admin on an empty database; prints the admin's
    /// password once. Refuses a database that has an owner already.
    Init,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Show or set the owner's bulk licence.
    Licence {
        #[command(subcommand)]
        action: LicenceAction,
    },
    /// Recompute every invariant from the database and print each violation; exit 1 if any.
    Verify,
    /// Print the OpenAPI document.
    Openapi,
}

#[derive(Debug, Subcommand)]
enum LicenceAction {
    /// Print the licence lines that count today or later.
    Show,
    /// Replace the licence from today on; lines not given end today.
    Set {
        /// `RESOURCE=AMOUNT`, e.g. `users=10000`, `domains=2000`, `module:lft=500`; repeatable.
        #[arg(long = "resource", value_name = "RESOURCE=AMOUNT", required = true, value_parser = parse_line)]
        resources: Vec<(String, i64)>,
        /// First day the lines count (default today, UTC).
        #[arg(long)]
        starts_on: Option<chrono::NaiveDate>,
        /// First day they no longer count (default: open-ended).
        #[arg(long)]
        ends_on: Option<chrono::NaiveDate>,
    },
}

fn parse_line(text: &str) -> Result<(String, i64), String> {
    let (resource, amount) = text
        .split_once('=')
        .ok_or_else(|| "expected RESOURCE=AMOUNT, e.g. users=10000".to_owned())?;
    let amount = amount
        .trim()
        .parse()
        .map_err(|_| format!("`{amount}` is not a whole number"))?;
    Ok((resource.trim().to_owned(), amount))
}

/// Exit codes: 0 success, 1 the command failed, 2 bad configuration (clap uses 2 for bad flags too).
fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) if !err.use_stderr() => err.exit(), // --help, --version
        Err(err) => {
            eprintln!("allot: {}", one_line(&err));
            return ExitCode::from(2);
        }
    };
    // Held to the end of `main`: dropping it writes the log lines still queued.
    let _log = match telemetry::init(&cli.config.log, cli.config.log_format) {
        Ok(guard) => guard,
        Err(message) => {
            eprintln!("allot: ALLOT_LOG: {message}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(cli.config),
        Command::Init => init_command(&cli.config),
        Command::Migrate => startup::open_connection(&cli.config).map(|_| ExitCode::SUCCESS),
        Command::Licence { action } => licence_command(&cli.config, action),
        Command::Verify => verify_command(&cli.config),
        Command::Openapi => {
            print!("{}", api::openapi_json(&api::openapi()));
            Ok(ExitCode::SUCCESS)
        }
    };
    result.unwrap_or_else(|err| {
        eprintln!("allot: {err}");
        ExitCode::from(2)
    })
}

/// clap's error as one line that names the environment variable too, since that is where most
/// operators set things: "invalid value 'x' for '--listen <LISTEN>' (ALLOT_LISTEN): ...".
fn one_line(err: &clap::Error) -> String {
    let text = err.to_string();
    let first = text.lines().next().unwrap_or_default();
    let mut line = first.strip_prefix("error: ").unwrap_or(first).to_owned();
    let command = Cli::command();
    for arg in command.get_arguments() {
        let (Some(long), Some(env)) = (arg.get_long(), arg.get_env()) else {
            continue;
        };
        let flag = format!("'--{long} ");
        if let Some(start) = line.find(&flag) {
            if let Some(end) = line[start + 1..].find('\'') {
                let at = start + 1 + end + 1;
                line.insert_str(at, &format!(" ({})", env.to_string_lossy()));
            }
            break;
        }
    }
    line
}

fn serve(config: Config) -> Result<ExitCode, StartupError> {
    let prepared = startup::prepare(&config)?;
    if let Some(init) = &prepared.initialised {
        init::announce(init);
    }
    let listen = config.listen;
    actix_web::rt::System::new().block_on(async move {
        let app = Application::build(config, prepared.pool, prepared.keys, prepared.sealer)?;
        tracing::info!(%listen, port = app.port(), https = app.https(), "serving");
        match app.run_until_stopped().await {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(err) => {
                tracing::error!(error = %err, "server failed");
                Ok(ExitCode::FAILURE)
            }
        }
    })
}

fn init_command(config: &Config) -> Result<ExitCode, StartupError> {
    let mut conn = startup::open_connection(config)?;
    match init::init_if_empty(&mut conn, config)? {
        Some(created) => {
            init::announce(&created);
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprintln!("allot: the database already has an owner; nothing was changed.");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn licence_command(config: &Config, action: LicenceAction) -> Result<ExitCode, StartupError> {
    use allot::service::licence::{self, LicenceLine};
    use allot::store::write_tx;
    let mut conn = startup::open_connection(config)?;
    let today = config.clock.today();
    let result = match action {
        LicenceAction::Show => licence::current_lines(&mut conn, today),
        LicenceAction::Set {
            resources,
            starts_on,
            ends_on,
        } => {
            let lines: Vec<LicenceLine> = resources
                .into_iter()
                .map(|(resource, amount)| LicenceLine {
                    resource,
                    amount,
                    starts_on,
                    ends_on,
                })
                .collect();
            write_tx(&mut conn, |conn| {
                licence::replace_as_system(conn, today, &lines)
            })
        }
    };
    match result {
        Ok(lines) => {
            println!(
                "{:<24} {:>12}  {:<10}  {:<10}",
                "RESOURCE", "AMOUNT", "STARTS ON", "ENDS ON"
            );
            for line in lines {
                let ends = line.ends_on.map_or("-".to_owned(), |d| d.to_string());
                println!(
                    "{:<24} {:>12}  {:<10}  {:<10}",
                    line.resource, line.amount, line.starts_on, ends
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            eprintln!("allot: {}", describe(&err));
            Ok(ExitCode::FAILURE)
        }
    }
}

/// An API error as the command line shows it, with each invalid field.
fn describe(err: &allot::error::ApiError) -> String {
    match err {
        allot::error::ApiError::NotFound => {
            "the database has no owner yet; run `allot init` first".to_owned()
        }
        allot::error::ApiError::Validation(errors) => errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}

fn verify_command(config: &Config) -> Result<ExitCode, StartupError> {
    let mut conn = startup::open_connection(config)?;
    let today = config.clock.today();
    let findings = allot::store::verify::run(&mut conn, today).map_err(|e| StartupError {
        setting: "DATABASE_URL",
        message: format!("reading the database failed: {e}"),
    })?;
    for finding in &findings {
        println!("violation: {finding}");
    }
    if findings.is_empty() {
        println!("allot verify: no violations");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("allot verify: {} violation(s)", findings.len());
        Ok(ExitCode::FAILURE)
    }
}
