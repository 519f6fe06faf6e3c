//! Integration tests: the bridge over HTTP against wa-sim (the real
//! whatsapp-rust client on the bridge's side, the real protocol on the
//! simulator's), a real Redis started for the test, the embedded store, and
//! a real HTTP webhook receiver. One test binary: linking is the slow part.

mod support;

mod bridge;
mod browser;
mod chats;
mod cloud;
mod dashboard;
mod durability;
mod events;
mod formats;
mod groups;
mod kinds;
mod media;
mod process;
mod security;
mod webhooks;
