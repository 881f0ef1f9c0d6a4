//! The command line: serve, migrate, demo, orgunit import, openapi.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use serde_json::Value;

use fieldsync::settings::Settings;

#[derive(Parser)]
#[command(
    name = "fieldsync",
    version,
    about = "Sync server for village population and family-planning field work"
)]
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
    /// Accounts.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Field workers' devices.
    Device {
        #[command(subcommand)]
        command: DeviceCommand,
    },
    /// Token signing keys.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Act as field devices of the demo county over HTTP, then verify the store.
    Simulate(SimulateArgs),
    /// Write a consistent backup while the server runs (SQLite: VACUUM INTO; PostgreSQL:
    /// pg_dump -Fc).
    Backup {
        #[arg(long)]
        out: PathBuf,
    },
    /// Restore a backup into a fresh, empty database, then migrate and check durability.
    Restore {
        #[arg(long)]
        from: PathBuf,
    },
    /// Write the OpenAPI document (default: api-spec/openapi.json).
    Openapi {
        #[arg(long, default_value = "api-spec/openapi.json")]
        out: PathBuf,
    },
    /// Write the report of an org unit with its breakdown, or one of its ledgers (--ledger),
    /// as CSV (UTF-8 with BOM) or XLSX.
    Report {
        #[arg(long)]
        org_unit: String,
        /// 2026-10 (month), 2026-Q4, 2026 (year), or with --kind ytd 2026-10.
        #[arg(long, required_unless_present_any = ["from", "ledger"], conflicts_with_all = ["from", "ledger"])]
        period: Option<String>,
        /// month, quarter, ytd or year (inferred from --period when omitted).
        #[arg(long, conflicts_with = "ledger")]
        kind: Option<String>,
        /// A date range instead of --period: first day, YYYY-MM-DD.
        #[arg(long, requires = "to", conflicts_with = "ledger")]
        from: Option<String>,
        /// Last day of the range (inclusive), YYYY-MM-DD.
        #[arg(long, requires = "from")]
        to: Option<String>,
        /// A ledger of the org unit's subtree instead of the report: person, birth, measure...
        #[arg(long)]
        ledger: Option<String>,
        /// Language of the headers: zh-CN (default) or en.
        #[arg(long, default_value = "zh-CN")]
        lang: String,
        /// csv or xlsx (default: from the file name, else csv).
        #[arg(long)]
        format: Option<String>,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(clap::Args)]
struct SimulateArgs {
    /// A running server (its --database-url must be given too: accounts and checks use it).
    #[arg(long, conflicts_with = "spawn")]
    url: Option<String>,
    /// Start the server in-process (default database: a temp SQLite file).
    #[arg(long)]
    spawn: bool,
    #[arg(long, default_value_t = 30)]
    devices: usize,
    #[arg(long, default_value_t = 7)]
    days: usize,
    #[arg(long, default_value_t = 40)]
    ops_per_day: usize,
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Share of edits that collide with another device's edit of the same field.
    #[arg(long, default_value_t = 0.05)]
    conflict_rate: f64,
    /// Share of pushes sent twice.
    #[arg(long, default_value_t = 0.1)]
    resend_rate: f64,
    /// Chance per device and day of going offline for 2 to 4 days.
    #[arg(long, default_value_t = 0.1)]
    offline_rate: f64,
    #[arg(long, default_value_t = 2026)]
    seed: u64,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an account. The password is read from stdin (--password-stdin) or generated and
    /// printed once.
    Add {
        #[arg(long)]
        username: String,
        /// worker, township_supervisor, county_supervisor or admin.
        #[arg(long)]
        role: String,
        /// A supervisor's township or county code.
        #[arg(long)]
        org_unit: Option<String>,
        /// A worker's village or villager-group code (repeatable).
        #[arg(long = "village")]
        villages: Vec<String>,
        #[arg(long)]
        display_name: Option<String>,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a new password (read from stdin with --password-stdin, or generated and printed once).
    Passwd {
        username: String,
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Retire the signing key (it keeps verifying the tokens it signed) and generate a new one
    /// in data_dir; restart the server to sign with it.
    Rotate,
}

#[derive(Subcommand)]
enum DeviceCommand {
    /// List devices, optionally of one user (id or username).
    List {
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke a device: its tokens stop working; what it synced stays.
    Revoke { id: String },
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
    if matches!(cli.command, Command::Simulate(_)) {
        // Warnings only: the in-process server's request lines would drown the summary.
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
            .with_writer(std::io::stderr)
            .init();
    } else {
        fieldsync::telemetry::init(&settings.log_format);
    }
    for name in &settings.ignored_env {
        // The name only: a value could be a secret of whatever tool set it.
        tracing::warn!(variable = %name, "ignoring an environment variable that names no setting");
    }

    match cli.command {
        Command::Serve { demo, .. } => serve(settings, demo),
        Command::Migrate => migrate(&settings),
        Command::Demo { seed } => {
            let db = fieldsync::open_database(&settings)?;
            let summary =
                fieldsync::demo::load(&db, seed, true).map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("{summary}");
            Ok(())
        }
        Command::Orgunit {
            command: OrgunitCommand::Import { file },
        } => {
            let f =
                std::fs::File::open(&file).with_context(|| format!("open {}", file.display()))?;
            let units = fieldsync::orgunit::parse_csv(f)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let db = fieldsync::open_database(&settings)?;
            let bar = fieldsync::progress::Progress::items(units.len() as u64, "org units");
            bar.set_message("import");
            let n = db
                .write(|c| fieldsync::orgunit::upsert_reporting(c, &units, &mut |n| bar.inc(n)))
                .map_err(|e| anyhow::anyhow!("{}: {e}; nothing imported", file.display()))?;
            bar.finish();
            println!("imported {n} org units");
            Ok(())
        }
        Command::Simulate(a) => simulate(&cli.database_url, a),
        Command::User { command } => user_command(&settings, command),
        Command::Device { command } => device_command(&settings, command),
        Command::Key {
            command: KeyCommand::Rotate,
        } => {
            let r = fieldsync::auth::keys::rotate(&settings)?;
            println!(
                "retired key {} (still verifies the tokens it signed); new signing key {}; restart the server to use it",
                r.retired_kid, r.new_kid
            );
            Ok(())
        }
        Command::Backup { out } => {
            println!("{}", fieldsync::backup::backup(&settings, &out)?);
            Ok(())
        }
        Command::Restore { from } => {
            println!("{}", fieldsync::backup::restore(&settings, &from)?);
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
        Command::Report {
            org_unit,
            period,
            kind,
            from,
            to,
            ledger,
            lang,
            format,
            out,
        } => {
            use fieldsync::report::export::{write_ledger_file, write_report_file, ExportFormat};
            let lang =
                fieldsync::report::lang::Lang::parse(&lang).context("--lang is zh-CN or en")?;
            let format = match format.as_deref() {
                Some(f) => ExportFormat::parse(f).context("--format is csv or xlsx")?,
                None if out.extension().is_some_and(|e| e == "xlsx") => ExportFormat::Xlsx,
                None => ExportFormat::Csv,
            };
            if let Some(name) = ledger {
                let entity = fieldsync::domain::entities::Entity::parse(&name)
                    .with_context(|| format!("--ledger: no record type {name:?}"))?;
                let db = fieldsync::open_database(&settings)?;
                let n = write_ledger_file(&db, entity, &org_unit, format, &out, lang)
                    .map_err(|e| anyhow::anyhow!("report: {e}"))?;
                println!("wrote {} ({n} records)", out.display());
                return Ok(());
            }
            let period = fieldsync::report::report::Period::parse(
                kind.as_deref(),
                period.as_deref(),
                from.as_deref(),
                to.as_deref(),
            )
            .map_err(|e| anyhow::anyhow!(e))?;
            let db = fieldsync::open_database(&settings)?;
            write_report_file(&db, &org_unit, &period, format, &out, lang, settings.report)
                .map_err(|e| anyhow::anyhow!("report: {e}"))?;
            println!("wrote {}", out.display());
            Ok(())
        }
    }
}

/// Applies pending migrations one by one under a progress bar (on a terminal).
fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let db = fieldsync::connect_database(settings)?;
    let bar = fieldsync::progress::Progress::items(0, "migrations");
    bar.set_message("migrate");
    let applied = db.run_migrations_reporting(&mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish();
    let pending = db
        .pending_migrations()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "applied {applied} migrations; current on {} ({pending} pending)",
        db.backend().name()
    );
    Ok(())
}

/// A password from stdin (first line) or a generated one (`Some` copy, to print once after
/// the change succeeded).
fn read_or_generate_password(from_stdin: bool) -> anyhow::Result<(String, Option<String>)> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        let pw = line.trim_end_matches(['\r', '\n']).to_string();
        fieldsync::auth::passwords::check_new(&pw).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok((pw, None))
    } else {
        let pw = fieldsync::auth::passwords::generate(16);
        Ok((pw.clone(), Some(pw)))
    }
}

fn user_command(settings: &Settings, command: UserCommand) -> anyhow::Result<()> {
    use fieldsync::auth::{passwords, roles::Role, users};
    let db = fieldsync::open_database(settings)?;
    match command {
        UserCommand::Add {
            username,
            role,
            org_unit,
            villages,
            display_name,
            password_stdin,
        } => {
            let role = Role::parse(&role)
                .with_context(|| format!("unknown role {role:?} ({})", Role::names()))?;
            let (pw, generated) = read_or_generate_password(password_stdin)?;
            let hash = passwords::hash_blocking(&pw).map_err(|e| anyhow::anyhow!("{e}"))?;
            let new = users::NewUser {
                display_name: display_name.unwrap_or_else(|| username.clone()),
                username,
                role,
                org_unit,
                villages,
            };
            let user = db
                .write(|c| users::create(c, &new, &hash))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!(
                "created user {} ({}) id {}",
                user.username,
                user.role.as_str(),
                user.id
            );
            if let Some(pw) = generated {
                println!("password (shown once): {pw}");
            }
            Ok(())
        }
        UserCommand::Passwd {
            username,
            password_stdin,
        } => {
            let (pw, generated) = read_or_generate_password(password_stdin)?;
            let hash = passwords::hash_blocking(&pw).map_err(|e| anyhow::anyhow!("{e}"))?;
            db.write(|c| users::set_password(c, &username, &hash))
                .map_err(|e| anyhow::anyhow!("{username}: {e}"))?;
            println!("password changed for {username}");
            if let Some(pw) = generated {
                println!("password (shown once): {pw}");
            }
            Ok(())
        }
    }
}

fn device_command(settings: &Settings, command: DeviceCommand) -> anyhow::Result<()> {
    use fieldsync::auth::devices;
    let db = fieldsync::open_database(settings)?;
    match command {
        DeviceCommand::List { user } => {
            let list = db
                .read(|c| devices::list_all(c, user.as_deref()))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("{:<36}  {:<8}  {:<20}  name", "id", "status", "user");
            for d in list {
                println!(
                    "{:<36}  {:<8}  {:<20}  {}",
                    d.id, d.status, d.username, d.name
                );
            }
            Ok(())
        }
        DeviceCommand::Revoke { id } => {
            let d = db
                .write(|c| devices::revoke(c, None, &id, "cli"))
                .map_err(|e| anyhow::anyhow!("device {id}: {e}"))?;
            println!("device {} revoked", d.id);
            Ok(())
        }
    }
}

fn simulate(database_url: &Option<String>, a: SimulateArgs) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let opts = fieldsync::simulate::Options {
        url: a.url,
        spawn: a.spawn,
        database_url: database_url.clone(),
        devices: a.devices,
        days: a.days,
        ops_per_day: a.ops_per_day,
        concurrency: a.concurrency,
        conflict_rate: a.conflict_rate,
        resend_rate: a.resend_rate,
        offline_rate: a.offline_rate,
        seed: a.seed,
        progress: std::io::stderr().is_terminal(),
    };
    let report = fieldsync::simulate::run(&opts)?;
    println!("{report}");
    if !report.passed() {
        bail!("verification failed");
    }
    Ok(())
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
        let password = db
            .write(fieldsync::auth::users::ensure_demo_accounts)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        if let Some(pw) = password {
            println!("admin password (shown once): {pw}");
            println!(
                "demo accounts admin, county, township and w<village code> share this password"
            );
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
