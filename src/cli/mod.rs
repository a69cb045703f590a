pub mod demo;
pub mod occlude;
pub mod protocol;
pub mod run;
