pub mod demo;
pub mod occlude;
pub mod profile;
pub mod run;
