//! Several gateways on one PostgreSQL database: the signals they send each other (`bus`) and
//! the registry of live gateways that keeps a misconfigured one from joining (`members`).
pub mod bus;
pub mod members;
