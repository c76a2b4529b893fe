//! A seeded fault-injecting pass-through for HTTP/2 (gRPC) servers such as the Google Cloud
//! emulators, for testing that clients survive what real networks do.
//!
//! Put one listener per client process in front of a server ([`FaultProxy::listen`]) and point the
//! process at it. For each gRPC call the proxy consults scripted [`Rule`]s first, then the seeded
//! random [`Plan`], and may: answer `UNAVAILABLE`, `INTERNAL`, `DEADLINE_EXCEEDED` or
//! `RESOURCE_EXHAUSTED` without forwarding; forward the call and then drop the server's answer
//! (the server applied it, the client cannot know); or delay it. [`FaultProxy::freeze`] holds all
//! traffic for a while, an outage. Every fault is logged ([`FaultProxy::injected`]) with the label,
//! method and call number that decided it, so a run is replayed by its seed. Anything that is not
//! gRPC (REST) passes through untouched. An [`Observer`] sees every call, which is how the benchmark
//! counts requests.

mod gate;
mod plan;
mod proxy;
mod tap;

pub use gate::Gate;
pub use plan::{BodyMatcher, Fault, FaultKind, Plan, Rule, splitmix64};
pub use proxy::{Answer, Call, FaultProxy, Injected, Observer, ProxyBody, grpc_error};
