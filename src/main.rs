use std::process::ExitCode;

use clap::Parser;

use agent_api::cli::{self, Cli};
use agent_api::config::{ConfigError, Settings};
use agent_api::exit::ActionNeeded;

#[actix_web::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("agent-api: {error}");
            return ExitCode::from(2);
        }
    };
    for warning in &settings.warnings {
        eprintln!("agent-api: warning: {warning}");
    }
    match cli::run(cli.command, settings).await {
        Ok(()) => ExitCode::SUCCESS,
        // A setting the command needs is missing or unusable, or something else the operator
        // must act on: one line saying what.
        Err(error)
            if error.downcast_ref::<ConfigError>().is_some()
                || error.downcast_ref::<ActionNeeded>().is_some() =>
        {
            eprintln!("agent-api: {error}");
            ExitCode::from(2)
        }
        Err(error) => {
            eprintln!("agent-api: {error:#}");
            ExitCode::FAILURE
        }
    }
}
