//! Everything the bridge keeps besides the WhatsApp session files: the
//! session registry, the webhook outbox and the ids of forwarded messages.
//! One trait, two implementations that pass the same tests: an embedded
//! durable store under the files root, and Redis.
