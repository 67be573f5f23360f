//! `chainflow analyze`: enriches one option chain given as JSON, without Kafka.

use crate::cli::AnalyzeArgs;
use anyhow::{Context, Result};
use chainflow_config::{Config, ProductSpec};
use chainflow_processors::enrich::{enrich_chain, Source};
use chainflow_schemas::{EnrichedOptionChain, JsonForm, OptionChain};
use std::io::Read;

impl AnalyzeArgs {
    /// The product's parameters with this run's overrides.
    fn apply(&self, p: &mut ProductSpec) {
        if let Some(r) = self.rate {
            p.params.rate = r;
        }
        if let Some(q) = self.dividend_yield {
            p.params.dividend_yield = q;
        }
        if let Some(close) = self.expiry_close {
            p.close = close;
            p.params.expiry_close = close.format("%H:%M").to_string();
        }
        if let Some(tz) = self.time_zone {
            p.tz = tz;
            p.params.time_zone = tz.name().to_string();
        }
    }
}

/// Reads the chain, enriches it and prints the enriched chain as JSON.
pub fn analyze(config: &Config, args: &AnalyzeArgs) -> Result<()> {
    let (name, text) = match &args.file {
        Some(path) => (
            path.display().to_string(),
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        ),
        None => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading standard input")?;
            ("-".to_string(), text)
        }
    };
    let shown = if name == "-" { "standard input" } else { &name };
    let chain = JsonForm::<OptionChain>::new()
        .parse(&text)
        .with_context(|| format!("{shown} is not an option chain"))?;
    let mut products = config.product_specs()?;
    if let Some(product) = products.get_mut(&chain.product) {
        args.apply(product);
    }
    let source = Source {
        topic: &name,
        partition: -1,
        offset: -1,
    };
    let enriched = enrich_chain(&chain, &products, source, chrono::Utc::now().timestamp_micros()).map_err(|e| {
        let known = products.keys().cloned().collect::<Vec<_>>().join(", ");
        anyhow::anyhow!("{shown}: {e} (configured products: {known})")
    })?;
    let json = JsonForm::<EnrichedOptionChain>::new().to_json(&enriched);
    println!("{}", serde_json::to_string_pretty(&json)?);
    Ok(())
}
