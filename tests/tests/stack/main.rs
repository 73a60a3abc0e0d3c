//! The stack end to end (one test binary, shared harness): the chain with
//! real Prometheus and Alertmanager under four faults, an Alertmanager
//! pair over two receivers, the dashboards against real data, and the
//! docker-compose files checked statically.
#![forbid(unsafe_code)]

mod compose;
mod compose_hosts;
mod dashboards;
mod deploys;
mod fleet;
mod ha;
mod harness;
mod llm;
mod processes;
mod scenarios;
mod storm;
mod traffic;
