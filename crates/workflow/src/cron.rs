//! `on.schedule` cron expressions: five POSIX fields, UTC, as GitHub reads them.

use croner::parser::{CronParser, Seconds, Year};

pub use croner::Cron;
pub use croner::errors::CronError;

/// Parses a five-field cron expression (minute hour day-of-month month day-of-week).
pub fn parse(src: &str) -> Result<Cron, CronError> {
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(src)
}

#[cfg(test)]
mod tests {
    #[test]
    fn five_fields_only() {
        assert!(super::parse("30 5 * * 1,3").is_ok());
        assert!(super::parse("*/15 * * * *").is_ok());
        assert!(super::parse("0 30 5 * * 1").is_err());
        assert!(super::parse("61 * * * *").is_err());
        assert!(super::parse("* * *").is_err());
    }
}
