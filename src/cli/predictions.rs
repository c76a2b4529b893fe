//! `props-pipeline predictions`: a date's current predictions (the batch its pointer publishes), or a
//! given generation's, read where the batch's workers wrote them.

use anyhow::{Context, bail};
use clap::Args;
use props_pipeline::batch::state::BatchState;
use props_pipeline::batch::store::BatchStore;
use props_pipeline::messages::GameDate;
use props_pipeline::nba::store::{batch_predictions, published_batch};
use props_pipeline::nba::types::PlayerPrediction;
use serde::Serialize;

use super::args::FirestoreOnly;
use super::output::{self, Column, outln};

#[derive(Debug, Args)]
pub struct PredictionsArgs {
    /// The game date (YYYY-MM-DD).
    #[arg(long)]
    pub game_date: String,
    /// Read this generation of the date instead of the published one (a superseded or failed
    /// generation stays readable until retention deletes its batch).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub generation: Option<u64>,
    /// Print the stable JSON document instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub google: FirestoreOnly,
}

/// What `predictions --json` prints (fields are only ever added).
#[derive(Debug, Serialize)]
struct PredictionsReport {
    game_date: String,
    batch_id: String,
    generation: u64,
    state: BatchState,
    /// Whether these are the date's current predictions (the batch its pointer publishes).
    published: bool,
    predictions: Vec<PlayerPrediction>,
}

pub async fn run(args: PredictionsArgs) -> anyhow::Result<()> {
    let date = args.game_date.parse::<GameDate>().context("invalid --game-date")?.to_string();
    let store = BatchStore::new(props_pipeline::gcp::firestore::connect(&args.google.settings()).await?);
    let published = published_batch(store.db(), &date).await.context("reading the date's pointer")?;
    let header = match (args.generation, &published) {
        (Some(generation), _) => store.batch_of_generation(&date, generation).await?.with_context(|| {
            format!("no generation {generation} of {date} (`props-pipeline status --game-date {date}` lists them)")
        })?,
        (None, Some((batch_id, _))) => {
            store.header(batch_id).await?.with_context(|| format!("the published batch {batch_id} is gone"))?
        }
        (None, None) => bail!(
            "no batch of {date} has completed yet: nothing is published (`props-pipeline status --game-date {date}` \
             shows its batches; `--generation N` reads one that did not complete)"
        ),
    };
    let is_published = published.as_ref().is_some_and(|(id, _)| *id == header.batch_id);
    let predictions = batch_predictions(store.db(), &header.batch_id, header.generation)
        .await
        .context("reading the batch's predictions")?
        .into_iter()
        .map(|stored| stored.prediction)
        .collect();
    let report = PredictionsReport {
        game_date: date,
        batch_id: header.batch_id,
        generation: header.generation,
        state: header.state,
        published: is_published,
        predictions,
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        print_table(&report)?;
    }
    Ok(())
}

fn print_table(report: &PredictionsReport) -> std::io::Result<()> {
    let props: usize = report.predictions.iter().map(|p| p.props.len()).sum();
    let which = if report.published { "published" } else { "not published" };
    outln!(
        "{} generation {} (batch {}, {}, {which}): {} players, {props} props",
        report.game_date,
        report.generation,
        report.batch_id,
        report.state,
        report.predictions.len()
    )?;
    let columns = [
        Column::left("PLAYER", 28),
        Column::left("TEAM", 4),
        Column::left("OPP", 4),
        Column::left("STAT", 10),
        Column::right("LINE"),
        Column::right("PROJECTION"),
        Column::right("P(OVER)"),
        Column::right("EDGE"),
        Column::left("PICK", 6),
    ];
    let rows = report.predictions.iter().flat_map(|p| {
        p.props.iter().map(|prop| {
            vec![
                p.player_name.clone(),
                p.team.clone(),
                p.opponent.clone(),
                prop.stat.as_str().to_string(),
                format!("{:.1}", prop.line),
                format!("{:.2}", prop.projection),
                format!("{:.3}", prop.p_over),
                format!("{:+.3}", prop.edge),
                serde_json::to_value(prop.recommendation)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
            ]
        })
    });
    outln!("{}", output::table(&columns, rows))
}
