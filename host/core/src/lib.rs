//! avm-core: the small host at the centre of avm.
//!
//! It owns the address grammar ([`address`]), the mount router ([`router`]), configuration
//! ([`config`]), the closed error vocabulary ([`error`]), the [`Provider`] trait every provider
//! implements ([`provider`]) and the [`Host`] that routes requests to providers after checking
//! the caller ([`host`]). [`contract`] is the shared test suite every provider must pass.

pub mod address;
pub mod bytes;
pub mod config;
pub mod content;
pub mod contract;
pub mod error;
pub mod files;
pub mod host;
pub mod policy;
pub mod provider;
pub mod router;
pub mod storage;
pub mod text;
pub mod time;

pub use address::{Address, Query};
pub use content::Content;
pub use error::{Error, ErrorKind, Result};
pub use host::{Host, Mount};
pub use policy::{Action, Policy};
pub use provider::{
    Attrs, Caller, Capacity, Entry, ListOptions, Listing, NodeKind, Ops, Output, Provider,
    ProviderInfo, Put, RemoveOptions, Rename, Request, SearchHit, SearchOptions, SetAttrs, Stat,
    SuffixOn, SuffixSpec, WriteInput,
};
