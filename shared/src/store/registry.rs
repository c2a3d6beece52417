//! The account registry (DESIGN §6: `ACCOUNT#<id>` / `META`).
