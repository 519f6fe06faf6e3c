//! wapi: a multi-session WhatsApp Web bridge.

pub mod store;
