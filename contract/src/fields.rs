//! The field lists written once: the chain metrics and the analytics of an option. The
//! record types here, the ClickHouse rows (`chainflow-clickhouse`), the sink's conversions
//! and the live page's reads are all expanded from these lists, so a new chain metric is a
//! line in [`chain_metrics!`] (with its Avro field, its column in a migration, its
//! computation in `chainflow-analytics` and its cell on the page), a new option analytic a
//! line in [`option_analytics!`], and the fields of a quote are [`option_quote!`]. A unit test checks each list against the Avro
//! schema; `tests/rows.rs` checks the rows against ClickHouse's tables.
//!
//! A list is expanded through a callback: `chain_metrics!(callback [args])` calls
//! `callback! { [args] <doc, attributes, name: type,>... }`. The callbacks are
//! [`struct_with_fields!`] (a struct: its own fields, then the list's, then more of its
//! own) and [`literal_with_fields!`] (a struct literal taking the list's fields from a
//! value that has them); [`then!`] chains two lists, for a record that carries both the
//! quote and the analytics of an option.

/// Calls `$callback! { [$args] ... }` with the chain metrics (`docs/analytics.md`), in the
/// order of `enriched_option_chain.avsc` and of `chain_snapshots`' columns.
#[macro_export]
macro_rules! chain_metrics {
    ($($callback:ident)::+ [$($args:tt)*]) => {
        $($callback)::+! { [$($args)*]
            /// Σ put OI / Σ call OI; none when Σ call OI = 0.
            #[serde(default)]
            pcr_oi: Option<f64>,
            /// Σ put volume / Σ call volume; none when Σ call volume = 0.
            #[serde(default)]
            pcr_volume: Option<f64>,
            /// Strike nearest to spot, the lower one on a tie.
            atm_strike: f64,
            /// Call price + put price at `atm_strike`, if both have a price.
            #[serde(default)]
            atm_straddle_price: Option<f64>,
            /// Strike minimising the total payout to option holders; none when all OI is zero.
            #[serde(default)]
            max_pain_strike: Option<f64>,
            /// Σ call OI.
            total_call_oi: i64,
            /// Σ put OI.
            total_put_oi: i64,
            /// Σ call OI over strikes above spot.
            call_oi_otm: i64,
            /// Σ put OI over strikes below spot.
            put_oi_otm: i64,
            /// Σ call OI change over strikes above spot.
            call_buildup_otm: i64,
            /// Σ put OI change over strikes below spot.
            put_buildup_otm: i64,
            /// IV at the forward, interpolated in strike between the nearest strikes with an
            /// IV on either side (a strike's IV is the mean of its call and put IVs, or the
            /// one there is).
            #[serde(default)]
            atm_iv: Option<f64>,
            /// σ(25Δ put) − σ(25Δ call), each interpolated in delta between the two
            /// out-of-the-money options that bracket ∓0.25; none when either is not bracketed.
            #[serde(default)]
            iv_skew_25d: Option<f64>,
        }
    };
}

/// Calls `$callback! { [$args] ... }` with the quote of one option as the feed publishes
/// it, in the order of every record and table that carries it (`Quote`, `OptionQuote`,
/// `EnrichedOption`; `option_quotes`, `chain_options`).
#[macro_export]
macro_rules! option_quote {
    ($($callback:ident)::+ [$($args:tt)*]) => {
        $($callback)::+! { [$($args)*]
            /// Best bid (0 = none).
            bid: f64,
            /// Best offer (0 = none).
            ask: f64,
            /// Last traded price (0 = none).
            last: f64,
            /// Cumulative day volume, contracts.
            volume: i64,
            /// Open interest, contracts.
            oi: i64,
            /// Change in open interest since the previous close.
            oi_change: i64,
        }
    };
}

/// Calls `$callback! { [$args] ... }` with the analytics of one option, in the order of
/// the `EnrichedOption` record of `enriched_option_chain.avsc` (its last fields) and of
/// `chain_options`' columns. None where the option has no usable price or the solver
/// found no volatility.
#[macro_export]
macro_rules! option_analytics {
    ($($callback:ident)::+ [$($args:tt)*]) => {
        $($callback)::+! { [$($args)*]
            /// Black–Scholes–Merton implied volatility.
            #[serde(default)]
            iv: Option<f64>,
            /// ∂V/∂S.
            #[serde(default)]
            delta: Option<f64>,
            /// ∂²V/∂S², per 1 point of the underlying.
            #[serde(default)]
            gamma: Option<f64>,
            /// −∂V/∂T per calendar day.
            #[serde(default)]
            theta: Option<f64>,
            /// ∂V/∂σ per vol point.
            #[serde(default)]
            vega: Option<f64>,
            /// ∂V/∂r per 1% of rate.
            #[serde(default)]
            rho: Option<f64>,
        }
    };
}

/// A list's callback: defines `struct Name { head, <the list's fields>, tail }`, the list's
/// fields public, with their docs and attributes.
#[macro_export]
macro_rules! struct_with_fields {
    (
        [$(#[$meta:meta])* $vis:vis struct $name:ident { $($head:tt)* } { $($tail:tt)* }]
        $($(#[$field_meta:meta])* $field:ident: $ty:ty,)*
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $($head)*
            $($(#[$field_meta])* pub $field: $ty,)*
            $($tail)*
        }
    };
}

/// A list's callback: the struct literal `Name { given, <each field of the list>: source.field }`,
/// `source` being a variable whose type has the list's fields (they are all `Copy`).
#[macro_export]
macro_rules! literal_with_fields {
    (
        [$name:ident, $source:ident, { $($given:tt)* }]
        $($(#[$field_meta:meta])* $field:ident: $ty:ty,)*
    ) => {
        $name {
            $($given)*
            $($field: $source.$field,)*
        }
    };
}

/// A list's callback that expands a second list after it: `first!(then [second, callback
/// [args]])` calls `callback! { [[<first's fields>] args] <second's fields> }`, for the
/// callbacks of two lists ([`struct_with_two_lists!`], [`literal_with_two_lists!`]).
#[macro_export]
macro_rules! then {
    ([$($next:ident)::+, $($callback:ident)::+ [$($args:tt)*]] $($first:tt)*) => {
        $($next)::+! { $($callback)::+ [[$($first)*] $($args)*] }
    };
}

/// Two lists' callback (through [`then!`]): defines `struct Name { head, <the first
/// list's fields>, middle, <the second's>, tail }`.
#[macro_export]
macro_rules! struct_with_two_lists {
    (
        [
            [$($(#[$first_meta:meta])* $first:ident: $first_ty:ty,)*]
            $(#[$meta:meta])* $vis:vis struct $name:ident { $($head:tt)* } { $($middle:tt)* } { $($tail:tt)* }
        ]
        $($(#[$second_meta:meta])* $second:ident: $second_ty:ty,)*
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $($head)*
            $($(#[$first_meta])* pub $first: $first_ty,)*
            $($middle)*
            $($(#[$second_meta])* pub $second: $second_ty,)*
            $($tail)*
        }
    };
}

/// Two lists' callback (through [`then!`]): the struct literal `Name { given, <each field
/// of the first list>: first.field, <each of the second>: second.field }`.
#[macro_export]
macro_rules! literal_with_two_lists {
    (
        [
            [$($(#[$first_meta:meta])* $first:ident: $first_ty:ty,)*]
            $name:ident, $first_source:ident, $second_source:ident, { $($given:tt)* }
        ]
        $($(#[$second_meta:meta])* $second:ident: $second_ty:ty,)*
    ) => {
        $name {
            $($given)*
            $($first: $first_source.$first,)*
            $($second: $second_source.$second,)*
        }
    };
}

/// A list's callback: the names and Rust types of its fields, as `&[(name, type)]`.
#[macro_export]
macro_rules! field_names_and_types {
    ([] $($(#[$field_meta:meta])* $field:ident: $ty:ty,)*) => {
        &[$((stringify!($field), stringify!($ty)),)*]
    };
}

/// The chain metrics.
pub const CHAIN_METRICS: &[(&str, &str)] = chain_metrics!(field_names_and_types []);

/// The quote of an option.
pub const OPTION_QUOTE: &[(&str, &str)] = option_quote!(field_names_and_types []);

/// The analytics of an option.
pub const OPTION_ANALYTICS: &[(&str, &str)] = option_analytics!(field_names_and_types []);

chain_metrics!(struct_with_fields [
    /// The metrics of one chain, as `chainflow-analytics` computes them and the enriched
    /// chain, `chain_snapshots` and the live page carry them. `Default` is an empty chain's
    /// (no ratios, zero totals), for fixtures.
    #[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
    pub struct ChainMetrics {} {}
]);

option_analytics!(struct_with_fields [
    /// The analytics of one option, as `chainflow-analytics` computes them.
    #[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
    pub struct OptionAnalytics {} {}
]);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EnrichedOptionChain, Record};
    use serde_json::Value;

    /// The Avro type a field of a list is written with.
    fn avro_type(rust: &str) -> Value {
        let primitive = |t: &str| match t {
            "f64" => "double",
            "i64" => "long",
            other => panic!("no Avro type for {other} in the lists' test"),
        };
        let rust = rust.replace(' ', "");
        match rust.strip_prefix("Option<").and_then(|t| t.strip_suffix('>')) {
            Some(inner) => serde_json::json!(["null", primitive(inner)]),
            None => serde_json::json!(primitive(&rust)),
        }
    }

    fn fields(record: &Value) -> Vec<(String, Value)> {
        record["fields"]
            .as_array()
            .expect("a record has fields")
            .iter()
            .map(|f| (f["name"].as_str().unwrap().to_string(), f["type"].clone()))
            .collect()
    }

    /// `list`, as (name, Avro type), is a run of consecutive fields of `record`.
    fn assert_run_of(record: &Value, list: &[(&str, &str)], what: &str) {
        let fields = fields(record);
        let want: Vec<(String, Value)> = list.iter().map(|(n, t)| (n.to_string(), avro_type(t))).collect();
        let start = fields
            .iter()
            .position(|(n, _)| *n == want[0].0)
            .unwrap_or_else(|| panic!("{what}: {} is not in the schema", want[0].0));
        let found = &fields[start..(start + want.len()).min(fields.len())];
        assert_eq!(found, &want[..], "{what}: the schema's fields from {} on", want[0].0);
    }

    #[test]
    fn the_lists_are_runs_of_fields_of_the_enriched_chain_schema_with_the_same_types() {
        let schema: Value = serde_json::from_str(EnrichedOptionChain::SCHEMA).unwrap();
        assert_run_of(&schema, CHAIN_METRICS, "chain metrics");
        let strikes = fields(&schema).into_iter().find(|(n, _)| n == "strikes").unwrap().1;
        let option = &strikes["items"]["fields"][1]["type"];
        assert_eq!(option["name"], "EnrichedOption");
        assert_run_of(option, OPTION_ANALYTICS, "option analytics");
        assert_run_of(option, OPTION_QUOTE, "the enriched option's quote");
        let raw: Value = serde_json::from_str(crate::OptionChain::SCHEMA).unwrap();
        let quote = &fields(&raw).into_iter().find(|(n, _)| n == "strikes").unwrap().1["items"]["fields"][1]["type"];
        assert_run_of(quote, OPTION_QUOTE, "the chain's quote");
        let option_quote: Value = serde_json::from_str(crate::OptionQuote::SCHEMA).unwrap();
        assert_run_of(&option_quote, OPTION_QUOTE, "the option quote");
    }
}
