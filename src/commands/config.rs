//! `chainflow config check`: the configuration was loaded and validated before this runs
//! (an invalid one stops the program with exit code 2); this says what it points at.

use chainflow_config::Config;

/// Prints a summary of `config`, and with `print` the whole of it, secrets redacted.
pub fn check(config: &Config, print: bool) {
    println!("configuration is valid");
    println!(
        "  kafka       {} ({} partitions)",
        config.kafka.bootstrap_servers, config.kafka.partitions
    );
    println!("  registry    {}", config.registry.url);
    println!(
        "  clickhouse  {} (database {})",
        config.clickhouse.url, config.clickhouse.database
    );
    let products: Vec<&str> = config.products.keys().map(String::as_str).collect();
    println!("  products    {}", products.join(", "));
    if print {
        println!();
        print!("{}", config.to_redacted_toml());
    }
}
