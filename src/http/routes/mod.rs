//! The handlers, one module per group of routes, each with its OpenAPI annotations.

pub(super) mod admin;
pub(super) mod dashboard;
pub(super) mod editorial;
pub(super) mod health;
pub(super) mod live;
pub(super) mod reactions;
mod responses;
pub(super) mod stats;
pub(super) mod widget;
