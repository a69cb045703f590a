pub mod demo;
pub mod occlude;
pub mod run;
