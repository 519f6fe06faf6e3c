//! Errors inside the simulator.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum SimError {
    #[error("handshake: {0}")]
    Handshake(String),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("signal: {0}")]
    Signal(String),
    #[error("no prekey bundle for {0}")]
    NoBundle(String),
    #[error("connection closed")]
    Closed,
}

impl SimError {
    pub fn signal(e: impl std::fmt::Display) -> Self {
        SimError::Signal(e.to_string())
    }
}
