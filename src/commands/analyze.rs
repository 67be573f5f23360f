//! `chainflow analyze`: enriches one option chain given as JSON, without Kafka.

use crate::cli::AnalyzeArgs;
use crate::UsageError;
use anyhow::{Context, Result};
use chainflow_analytics::{enrich_chain, Source};
use chainflow_config::Config;
use chainflow_contract::ProductTerms;
use chainflow_contract::{EnrichedOptionChain, JsonForm, OptionChain};
use std::collections::BTreeMap;
use std::io::Read;

impl AnalyzeArgs {
    /// The terms of `product`: its configured terms with this run's flags over them, or,
    /// for a product that is not configured, the flags alone when they give every one.
    fn terms(&self, config: &Config, product: &str, shown: &str) -> Result<ProductTerms> {
        let configured = config.product_terms()?.remove(product);
        let from_flags = |base: Option<ProductTerms>| -> Option<ProductTerms> {
            Some(ProductTerms {
                rate: self.rate.or(base.map(|t| t.rate))?,
                dividend_yield: self.dividend_yield.or(base.map(|t| t.dividend_yield))?,
                expiry_close: self.expiry_close.or(base.map(|t| t.expiry_close))?,
                time_zone: self.time_zone.or(base.map(|t| t.time_zone))?,
            })
        };
        if let Some(terms) = from_flags(configured) {
            return Ok(terms);
        }
        let missing: Vec<&str> = [
            ("--rate", self.rate.is_none()),
            ("--dividend-yield", self.dividend_yield.is_none()),
            ("--expiry-close", self.expiry_close.is_none()),
            ("--time-zone", self.time_zone.is_none()),
        ]
        .into_iter()
        .filter_map(|(flag, missing)| missing.then_some(flag))
        .collect();
        let known: Vec<&str> = config.products.keys().map(String::as_str).collect();
        Err(UsageError(format!(
            "{shown}: unknown product {product:?} (configured: {}); to analyze it anyway, give its \
             parameters on the command line (missing: {})",
            known.join(", "),
            missing.join(", ")
        ))
        .into())
    }
}

/// Reads the chain, enriches it and prints the enriched chain as JSON.
pub fn analyze(config: &Config, args: &AnalyzeArgs) -> Result<()> {
    let (name, text) = if let Some(path) = &args.file {
        (
            path.display().to_string(),
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        )
    } else {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading standard input")?;
        ("-".to_string(), text)
    };
    let shown = if name == "-" { "standard input" } else { &name };
    let chain = JsonForm::<OptionChain>::new()
        .parse(&text)
        .with_context(|| format!("{shown} is not an option chain"))?;
    let terms = BTreeMap::from([(chain.product.clone(), args.terms(config, &chain.product, shown)?)]);
    let source = Source {
        topic: &name,
        partition: -1,
        offset: -1,
    };
    let enriched = enrich_chain(&chain, &terms, source, chrono::Utc::now().timestamp_micros())
        .with_context(|| format!("{shown} cannot be enriched"))?;
    let json = JsonForm::<EnrichedOptionChain>::new().to_json(&enriched);
    println!("{}", serde_json::to_string_pretty(&json)?);
    Ok(())
}
