//! The store's typed values at its API: ids that cannot be mixed up (a run's for a job's),
//! and the statuses and conclusions of runs and jobs. In the database and in JSON they are
//! what they always were: bare numbers and lowercase strings.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::StoreError;
use crate::db::Param;

macro_rules! id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(i64);

        impl $name {
            pub const fn new(id: i64) -> Self {
                $name(id)
            }

            /// The bare number (the database's, the API's).
            pub const fn get(self) -> i64 {
                self.0
            }
        }

        impl From<i64> for $name {
            fn from(id: i64) -> Self {
                $name(id)
            }
        }

        impl From<$name> for i64 {
            fn from(id: $name) -> i64 {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = std::num::ParseIntError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse().map($name)
            }
        }

        impl From<$name> for Param {
            fn from(id: $name) -> Param {
                Param::from(id.0)
            }
        }

        impl From<Option<$name>> for Param {
            fn from(id: Option<$name>) -> Param {
                Param::from(id.map($name::get))
            }
        }
    };
}

id!(
    /// A workflow run's id.
    RunId
);
id!(
    /// A job instance's id (a row of `jobs`, not the workflow's job key).
    JobId
);
id!(
    /// A registered runner's id.
    RunnerId
);
id!(
    /// An API token's id.
    TokenId
);

macro_rules! values {
    ($(#[$doc:meta])* $name:ident, $what:literal {
        $($(#[$vdoc:meta])* $variant:ident => $text:literal),* $(,)?
    }) => {
        $(#[$doc])*
        #[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $text)] $variant),*
        }

        impl $name {
            /// The value as the database and the API spell it.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),*
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = StoreError;
            fn from_str(s: &str) -> Result<Self, StoreError> {
                match s {
                    $($text => Ok($name::$variant),)*
                    _ => Err(StoreError::Unknown {
                        what: $what,
                        value: s.to_owned(),
                    }),
                }
            }
        }

        impl From<$name> for Param {
            fn from(v: $name) -> Param {
                Param::from(v.as_str())
            }
        }

        impl From<Option<$name>> for Param {
            fn from(v: Option<$name>) -> Param {
                Param::from(v.map($name::as_str))
            }
        }
    };
}

values!(
    /// Where a run is.
    RunStatus, "run status" {
        /// Held until someone approves it.
        Waiting => "waiting",
        Queued => "queued",
        Running => "running",
        Completed => "completed",
    }
);

values!(
    /// Where a job is.
    JobStatus, "job status" {
        /// Held until someone approves it (its environment asks for approval).
        Waiting => "waiting",
        Queued => "queued",
        /// Leased to a runner.
        Running => "running",
        Completed => "completed",
    }
);

values!(
    /// How a completed run or job ended.
    Conclusion, "conclusion" {
        Success => "success",
        Failure => "failure",
        Cancelled => "cancelled",
        Skipped => "skipped",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_values_are_bare_numbers_and_strings() {
        assert_eq!(serde_json::to_string(&RunId::new(3)).unwrap(), "3");
        assert_eq!(serde_json::from_str::<JobId>("7").unwrap(), JobId::from(7));
        assert_eq!(RunnerId::from(12).to_string(), "12");
        assert_eq!("42".parse::<TokenId>().unwrap().get(), 42);
        for c in [
            Conclusion::Success,
            Conclusion::Failure,
            Conclusion::Cancelled,
            Conclusion::Skipped,
        ] {
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(json, format!("\"{c}\""));
            assert_eq!(serde_json::from_str::<Conclusion>(&json).unwrap(), c);
            assert_eq!(c.as_str().parse::<Conclusion>().unwrap(), c);
        }
        assert_eq!(
            serde_json::to_string(&RunStatus::Waiting).unwrap(),
            "\"waiting\""
        );
        assert_eq!("running".parse::<JobStatus>().unwrap(), JobStatus::Running);
        assert!(matches!(
            "paused".parse::<JobStatus>(),
            Err(StoreError::Unknown {
                what: "job status",
                ..
            })
        ));
        assert!("Success".parse::<Conclusion>().is_err());
    }
}
