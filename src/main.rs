//! The command line: serve, migrate, demo, orgunit import, openapi.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use serde_json::Value;

use fieldsync::settings::Settings;

#[derive(Parser)]
#[command(name = "fieldsync", version, about = "Sync server for village population and family-planning field work")]
struct Cli {
    /// Settings file (default: ./fieldsync.toml when it exists).
    #[arg(long, global = true, env = "FIELDSYNC_CONFIG")]
    config: Option<PathBuf>,
    /// Database URL: sqlite://PATH (default sqlite://fieldsync.db) or postgres://user@host/db.
    #[arg(long, global = true)]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server (applies pending migrations first).
    Serve {
        /// Address to bind, e.g. 0.0.0.0:8080.
        #[arg(long)]
        bind: Option<String>,
        /// Load the demo county into an empty database and print an admin password once.
        #[arg(long)]
        demo: bool,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Load the demo county (deterministic from the seed) into the database.
    Demo {
        #[arg(long, default_value_t = 2026)]
        seed: u64,
    },
    /// Org units.
    Orgunit {
        #[command(subcommand)]
        command: OrgunitCommand,
    },
    /// Write the OpenAPI document (default: api-spec/openapi.json).
    Openapi {
        #[arg(long, default_value = "api-spec/openapi.json")]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum OrgunitCommand {
    /// Import org units from a CSV file of code,name,parent (UTF-8; header optional).
    Import { file: PathBuf },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut flags: Vec<(&str, Value)> = Vec::new();
    if let Some(url) = &cli.database_url {
        flags.push(("database_url", Value::from(url.clone())));
    }
    if let Command::Serve { bind: Some(b), .. } = &cli.command {
        flags.push(("bind", Value::from(b.clone())));
    }
    let settings = Settings::load(cli.config.as_deref(), &flags)?;
    fieldsync::telemetry::init(&settings.log_format);

    match cli.command {
        Command::Serve { demo, .. } => serve(settings, demo),
        Command::Migrate => {
            let db = fieldsync::open_database(&settings)?;
            let pending = db.pending_migrations().map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("migrations current on {} ({} pending)", db.backend().name(), pending);
            Ok(())
        }
        Command::Demo { seed } => {
            let db = fieldsync::open_database(&settings)?;
            let summary = fieldsync::demo::load(&db, seed, true).map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("{summary}");
            Ok(())
        }
        Command::Orgunit { command: OrgunitCommand::Import { file } } => {
            let f = std::fs::File::open(&file).with_context(|| format!("open {}", file.display()))?;
            let units = fieldsync::orgunits::parse_csv(f).map_err(|e| anyhow::anyhow!(e))?;
            let db = fieldsync::open_database(&settings)?;
            let n = db
                .write(|c| fieldsync::orgunits::upsert(c, &units))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("imported {n} org units");
            Ok(())
        }
        Command::Openapi { out } => {
            if let Some(dir) = out.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&out, fieldsync::openapi::pretty_json())?;
            println!("wrote {}", out.display());
            Ok(())
        }
    }
}

fn serve(settings: Settings, demo: bool) -> anyhow::Result<()> {
    let db = match fieldsync::open_database(&settings) {
        Ok(db) => db,
        Err(e) => bail!("cannot start: {e}"),
    };
    if demo {
        match fieldsync::demo::load(&db, 2026, false).map_err(|e| anyhow::anyhow!("{e}"))? {
            s if s.loaded => println!("{s}"),
            _ => println!("demo: the database already holds data; nothing loaded"),
        }
    }
    actix_web::rt::System::new().block_on(async move {
        let app = fieldsync::Application::build(settings, db)?;
        tracing::info!(addr = %app.addr(), "fieldsync listening");
        println!("fieldsync listening on http://{}", app.addr());
        app.server().await
    })?;
    Ok(())
}
