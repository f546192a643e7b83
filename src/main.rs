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
    /// Print the OpenAPI document.
    Openapi,
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
    if let Err(message) = telemetry::init(&cli.config.log, cli.config.log_format) {
        eprintln!("allot: ALLOT_LOG: {message}");
        return ExitCode::from(2);
    }
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(cli.config),
        Command::Init => init_command(&cli.config),
        Command::Migrate => startup::open_database(&cli.config).map(|_| ExitCode::SUCCESS),
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
    let (pool, keys, initialised) = startup::prepare(&config)?;
    if let Some(init) = &initialised {
        init::announce(init);
    }
    let listen = config.listen;
    actix_web::rt::System::new().block_on(async move {
        let app = Application::build(config, pool, keys)?;
        tracing::info!(%listen, port = app.port(), "serving");
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
    let pool = startup::open_database(config)?;
    let mut conn = pool.get().map_err(|e| StartupError {
        setting: "DATABASE_URL",
        message: e.to_string(),
    })?;
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
