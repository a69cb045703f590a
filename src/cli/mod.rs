pub mod demo;
pub mod explain;
pub mod occlude;
pub mod protocol;
pub mod profile;
pub mod run;
