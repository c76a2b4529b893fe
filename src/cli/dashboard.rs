//! `props-pipeline dashboard`: the dashboard alone, with `/healthz`, `/readyz` and `/metrics` beside it
//! (the same server as `run dashboard`).

use std::net::SocketAddr;

use clap::Args;
use props_pipeline::batch::store::BatchStore;
use props_pipeline::batch::sweep_policy::SweepSettings;
use props_pipeline::consumer::cancel_on_signals;
use props_pipeline::dashboard::Dashboard;
use props_pipeline::ops;

use super::args::FirestoreOnly;

#[derive(Debug, Args)]
pub struct DashboardArgs {
    /// Where the dashboard is served. Loopback by default: it has no login of its own (put it behind
    /// IAP to share it; docs/OPERATIONS.md). Port 0 picks a free port (logged as `http listening`).
    #[arg(long, env = "PROPS_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// The sweeper's settings, so a page says what the deployed sweeper will do and when.
    #[command(flatten)]
    pub sweep: SweepSettings,
    #[command(flatten)]
    pub google: FirestoreOnly,
}

pub async fn run(args: DashboardArgs) -> anyhow::Result<()> {
    let gcp = &args.google.settings();
    args.sweep.validate()?;
    let metrics = ops::metrics::install()?;
    let shutdown = cancel_on_signals();
    let store = BatchStore::new(props_pipeline::gcp::firestore::connect(gcp).await?);
    let ready = super::run::ready_check(&store);
    ready.consumers.mark_started();
    let pages = Dashboard::new(store, args.sweep).router();
    let http = ops::http::serve_with(args.http_addr, ready, metrics, shutdown, pages)
        .await
        .map_err(|error| super::errors::http_error(error, args.http_addr))?;
    println!("dashboard on http://{}/", http.addr);
    http.task.await??;
    Ok(())
}
