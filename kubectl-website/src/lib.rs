//! `kubectl website`: a kubectl plugin for Website objects.
//!
//! [`cli`] defines the commands and runs them; [`validate`] is the offline validation (no cluster), which runs the
//! same rules as the webhooks, from the types crate; [`commands`] holds the commands that talk to the cluster;
//! [`client`] connects like kubectl and keeps the API server's warnings; [`output`] prints tables, JSON and YAML;
//! [`error`] maps failures to exit codes.

pub mod cli;
pub mod client;
pub mod commands;
pub mod error;
pub mod output;
pub mod validate;
