//! One module per subcommand.

pub mod demo;
pub mod mil;
pub mod mil_run;
