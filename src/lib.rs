//! cedargate
pub mod bundle;
pub mod cli;
pub mod config;
pub mod decide;
pub mod dev;
pub mod engine;
pub mod http;
pub mod mapping;
pub mod reload;
pub mod server;
pub mod token;
