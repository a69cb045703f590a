pub mod demo;
pub mod explain;
pub mod occlude;
pub mod run;
