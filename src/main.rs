#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use reader_reactions::startup::{Application, configuration, shutdown_signal};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = configuration();
    if config.healthcheck {
        return match reader_reactions::healthcheck::probe(config.listen_addr).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("reader-reactions is not healthy: {error:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    reader_reactions::telemetry::init(config.log_format);
    let result = async { Application::build(config).await?.run_until(shutdown_signal()).await }.await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // The whole cause chain, once.
            tracing::error!(error = format!("{error:#}"), "reader-reactions failed");
            std::process::ExitCode::FAILURE
        }
    }
}
