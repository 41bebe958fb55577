//! `jobmatch`, the data CLI: command line parsing and dispatch to migrate,
//! generate, load and token.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use jobmatch_cli::generate::{self, World};
use jobmatch_cli::load;
use jobmatch_cli::model::LazyModel;
use shared::adapters::db_connect;
use shared::config::DbAuth;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgConnection};

#[derive(Parser)]
#[command(name = "jobmatch", version, about = "jobmatch data CLI")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply the database migrations, and make the functions' login role.
    Migrate(MigrateArgs),
    /// Write a synthetic, seedable data set as JSON Lines.
    Generate(GenerateArgs),
    /// Upsert a JSON Lines file into `jobs` or `profiles` (all or nothing).
    Load(LoadArgs),
    /// Mint an HS256 development token; prints only the token.
    Token(TokenArgs),
    /// Print a new completion-callback signing secret (`whsec_` + base64 of
    /// 32 random bytes) for the deployment's webhook secret.
    WebhookSecret,
}

#[derive(Args)]
struct Db {
    /// PostgreSQL connection URL (with `--db-auth iam`: no password in it).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// `iam`: log in with an RDS IAM token signed from the AWS credentials
    /// (RDS Proxy in AWS); `password`: the URL's own password.
    #[arg(long, env = "DB_AUTH", value_enum, default_value_t = DbAuthArg::Password)]
    db_auth: DbAuthArg,
}

#[derive(Args)]
struct MigrateArgs {
    #[command(flatten)]
    db: Db,
    /// The functions' login role (read-only: jobs and profiles), made or
    /// updated after the migrations; with its password only.
    #[arg(long, env = "FUNCTIONS_DB_USER", default_value = "jobmatch_functions")]
    functions_user: String,
    /// Its password; without it no login role is made.
    #[arg(long, env = "FUNCTIONS_DB_PASSWORD", hide_env_values = true)]
    functions_password: Option<String>,
    /// The writer's login role (the ingest and catalogue functions: rights
    /// on `jobs` alone), made or updated after the migrations.
    #[arg(long, env = "WRITER_DB_USER", default_value = "jobmatch_writer_login")]
    writer_user: String,
    /// Its password; without it no writer login is made.
    #[arg(long, env = "WRITER_DB_PASSWORD", hide_env_values = true)]
    writer_password: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum DbAuthArg {
    Password,
    Iam,
}

#[derive(Args)]
struct GenerateArgs {
    /// Number of jobs.
    #[arg(long)]
    jobs: usize,
    /// Seed: the same seed (and --as-of) gives byte-identical files.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Output file for the jobs.
    #[arg(long)]
    out: PathBuf,
    /// Output file for the profiles (`demo-user` plus --profiles more).
    #[arg(long)]
    profiles_out: Option<PathBuf>,
    /// Number of profiles besides `demo-user`.
    #[arg(long, default_value_t = 10, requires = "profiles_out")]
    profiles: usize,
    /// Postings are dated in the year before this day (YYYY-MM-DD, UTC); default today.
    #[arg(long)]
    as_of: Option<NaiveDate>,
    /// `none`: lines without `embedding`, the loader embeds their text with the
    /// model (the demo); `synthetic`: clustered synthetic vectors, for data sets
    /// too big to embed (benchmarks).
    #[arg(long, value_enum, default_value_t = EmbeddingsArg::None)]
    embeddings: EmbeddingsArg,
}

#[derive(Clone, Copy, ValueEnum)]
enum EmbeddingsArg {
    None,
    Synthetic,
}

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    Jobs,
    Profiles,
}

#[derive(Args)]
struct LoadArgs {
    /// What the file holds.
    kind: Kind,
    /// JSON Lines file.
    path: PathBuf,
    /// The embedding model's folder, for lines without an embedding.
    #[arg(long, env = "MODEL_DIR", default_value_os_t = embed::default_dir())]
    model_dir: PathBuf,
    /// A JSON Lines file of vectors already computed (read, then appended
    /// to), so that a text is not embedded again by a later load.
    #[arg(long)]
    embedding_cache: Option<PathBuf>,
    #[command(flatten)]
    db: Db,
}

#[derive(Args)]
struct TokenArgs {
    /// The subject (user id) of the token.
    #[arg(long)]
    sub: String,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 86_400)]
    ttl: i64,
    /// The `scope` claim, space-separated: `"jobs:read jobs:write"` mints
    /// an admin's token for the catalogue routes.
    #[arg(long)]
    scope: Option<String>,
    /// HS256 signing secret.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    secret: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("jobmatch: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jobmatch: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Migrate(args) => migrate(&args).await,
        Command::Generate(args) => generate(&args),
        Command::Load(args) => load(&args).await,
        Command::Token(args) => token(&args),
        Command::WebhookSecret => {
            let secret = shared::callback::new_webhook_secret()
                .map_err(|_| anyhow!("the OS random number generator failed"))?;
            println!("{secret}");
            Ok(())
        }
    }
}

/// One connection; the URL is never printed (it may hold a password).
async fn connect(db: &Db) -> Result<PgConnection> {
    tokio::time::timeout(
        Duration::from_secs(15),
        connect_options(db).await?.connect(),
    )
    .await
    .context("connecting to PostgreSQL timed out")?
    .map_err(|e| anyhow!("cannot connect to PostgreSQL: {e}"))
}

async fn connect_options(db: &Db) -> Result<PgConnectOptions> {
    Ok(match db.db_auth {
        DbAuthArg::Password => PgConnectOptions::from_str(&db.database_url)
            .context("DATABASE_URL is not a valid PostgreSQL URL")?,
        DbAuthArg::Iam => {
            let aws = shared::aws::load().await?;
            db_connect::options_now(&db.database_url, DbAuth::Iam, &aws).await?
        }
    }
    .application_name("jobmatch-cli"))
}

async fn migrate(args: &MigrateArgs) -> Result<()> {
    // A pool of one: shared::adapters::schema::migrate takes a pool.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(15))
        .connect_with(connect_options(&args.db).await?)
        .await
        .map_err(|e| anyhow!("cannot connect to PostgreSQL: {e}"))?;
    // sqlx errors repeat their source in their message: print it once.
    let outcomes = shared::adapters::schema::migrate(&pool)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let mut conn = pool.acquire().await?;
    eprintln!(
        "migrations applied: {}",
        shared::adapters::schema::summary(&outcomes)
    );
    use shared::adapters::postgres::{grant_login, READER_ROLE, WRITER_ROLE};
    for (user, password, group) in [
        (&args.functions_user, &args.functions_password, READER_ROLE),
        (&args.writer_user, &args.writer_password, WRITER_ROLE),
    ] {
        if let Some(password) = password {
            grant_login(&mut conn, user, password, group)
                .await
                .map_err(|e| anyhow!("the login role {user}: {e}"))?;
            eprintln!("login role {user} (member of {group})");
        }
    }
    Ok(())
}

fn create(path: &Path) -> Result<BufWriter<File>> {
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    Ok(BufWriter::with_capacity(1 << 20, file))
}

fn generate(args: &GenerateArgs) -> Result<()> {
    let opts = generate::Options {
        jobs: args.jobs,
        profiles: args.profiles,
        seed: args.seed,
        as_of: args.as_of.unwrap_or_else(generate::today),
        embeddings: match args.embeddings {
            EmbeddingsArg::None => generate::Embeddings::None,
            EmbeddingsArg::Synthetic => generate::Embeddings::Synthetic,
        },
    };
    let world = World::new(opts.seed);
    let jobs = generate::write_jobs(&world, &opts, &mut create(&args.out)?)
        .with_context(|| format!("writing {}", args.out.display()))?;
    let mut summary = format!("generated {jobs} jobs in {}", args.out.display());
    if let Some(path) = &args.profiles_out {
        let profiles = generate::write_profiles(&world, &opts, &mut create(path)?)
            .with_context(|| format!("writing {}", path.display()))?;
        summary.push_str(&format!(" and {profiles} profiles in {}", path.display()));
    }
    let embeddings = match opts.embeddings {
        generate::Embeddings::None => "no embeddings",
        generate::Embeddings::Synthetic => "synthetic embeddings",
    };
    eprintln!(
        "{summary} (seed {}, posted in the 365 days before {}, {embeddings})",
        opts.seed, opts.as_of
    );
    Ok(())
}

async fn load(args: &LoadArgs) -> Result<()> {
    let mut conn = connect(&args.db).await?;
    // Drawn on stderr, and not at all when that is not a terminal.
    let progress = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    progress.set_style(
        ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut model = LazyModel::new(args.model_dir.clone(), args.embedding_cache.clone());
    let (what, result) = match args.kind {
        Kind::Jobs => (
            "jobs",
            load::load_jobs(&mut conn, &args.path, &progress, &mut model).await,
        ),
        Kind::Profiles => (
            "profiles",
            load::load_profiles(&mut conn, &args.path, &progress, &mut model).await,
        ),
    };
    progress.finish_and_clear();
    let stats = result?;
    if stats.embedded > 0 {
        eprintln!(
            "embedded {} {what} from their text: {} by the model (loaded in {:.0} ms), {} from the cache",
            stats.embedded,
            stats.model_runs - model.cache_hits as u64,
            model.load_ms,
            model.cache_hits,
        );
    }
    eprintln!(
        "loaded {} {what} from {} in {:.2} s ({:.0} rows/s; {} inserted or changed; analyze {} ms)",
        stats.rows,
        args.path.display(),
        stats.elapsed.as_secs_f64(),
        stats.rows_per_sec(),
        stats.written,
        stats.analyze.as_millis()
    );
    Ok(())
}

fn token(args: &TokenArgs) -> Result<()> {
    if args.secret.is_empty() {
        bail!("JWT_SECRET (or --secret) is empty");
    }
    if args.sub.trim().is_empty() {
        bail!("--sub must not be empty");
    }
    if args.ttl <= 0 {
        bail!("--ttl must be positive");
    }
    let token = shared::auth::mint_hs256_scoped(
        args.secret.as_bytes(),
        &args.sub,
        args.scope.as_deref(),
        args.ttl,
    )
    .context("minting the token")?;
    println!("{token}");
    Ok(())
}
