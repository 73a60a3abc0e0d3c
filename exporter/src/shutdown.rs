//! One shutdown future for the whole process: SIGINT or SIGTERM.

pub use llmchat_common::shutdown_signal as signal;
