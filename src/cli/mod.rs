pub mod demo;
pub mod explain;
pub mod occlude;
pub mod profile;
pub mod protocol;
pub mod recipe;
pub mod run;
