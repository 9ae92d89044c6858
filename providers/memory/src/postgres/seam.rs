//! The PostgreSQL store as the memory provider's [`Engine`](crate::engine::Engine): each
//! method forwards to the store's own (reads.rs, search.rs, write/).

use std::sync::Arc;

use serde_json::Value;

use avm_core::time::Micros;
use avm_core::{Attrs, Caller, Content, NodeKind, Result};

use super::PgStore;
use crate::engine::{ChildEntry, Hit, Link, VersionInfo};
use crate::node::Node;
use crate::ops::{Outcome, WriteOp};

impl crate::engine::Engine for PgStore {
    fn apply(&self, op: WriteOp) -> Result<Outcome> {
        PgStore::apply(self, op)
    }
    fn apply_many(&self, ops: Vec<WriteOp>) -> Vec<Result<Outcome>> {
        PgStore::apply_many(self, ops)
    }
    fn sync(&self) -> Result<()> {
        PgStore::sync(self)
    }
    fn get(&self, path: &str) -> Result<Option<Arc<Node>>> {
        PgStore::get(self, path)
    }
    fn peek(&self, path: &str) -> Result<Option<Arc<Node>>> {
        PgStore::peek(self, path)
    }
    fn expired_pending(&self, path: &str) -> Result<bool> {
        PgStore::expired_pending(self, path)
    }
    fn kind(&self, path: &str) -> Result<Option<NodeKind>> {
        PgStore::kind(self, path)
    }
    fn has_children(&self, dir: &str) -> Result<bool> {
        PgStore::has_children(self, dir)
    }
    fn children(
        &self,
        dir: &str,
        caller: &Caller,
        offset: usize,
        limit: Option<usize>,
    ) -> Result<Vec<ChildEntry>> {
        PgStore::children(self, dir, caller, offset, limit)
    }
    fn descendants(
        &self,
        dir: &str,
        caller: &Caller,
        offset: usize,
        limit: Option<usize>,
    ) -> Result<Vec<Arc<Node>>> {
        PgStore::descendants(self, dir, caller, offset, limit)
    }
    fn descendants_after(
        &self,
        dir: &str,
        caller: &Caller,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Arc<Node>>> {
        PgStore::descendants_after(self, dir, caller, after, limit)
    }
    fn dir_info(&self, dir: &str, caller: &Caller) -> Result<Option<(Attrs, u64)>> {
        PgStore::dir_info(self, dir, caller)
    }
    fn capacity(&self) -> Result<avm_core::Capacity> {
        PgStore::capacity(self)
    }
    fn usage(&self, dir: &str) -> Result<(u64, u64)> {
        PgStore::usage(self, dir)
    }
    fn mark_of(&self, agent: &str, path: &str) -> Result<i64> {
        PgStore::mark_of(self, agent, path)
    }
    fn search(&self, scope: &str, caller: &Caller, query: &str, limit: usize) -> Result<Vec<Hit>> {
        PgStore::search(self, scope, caller, query, limit)
    }
    fn search_within(
        &self,
        scopes: &[String],
        caller: &Caller,
        extra: avm_core::storage::Keep<'_>,
        query: &str,
        limit: usize,
        snippets: bool,
    ) -> Result<Vec<Hit>> {
        PgStore::search_within(self, scopes, caller, extra, query, limit, snippets)
    }
    fn history(&self, path: &str, limit: usize) -> Result<Vec<VersionInfo>> {
        PgStore::history(self, path, limit)
    }
    fn version(&self, path: &str, version: i64) -> Result<Option<(VersionInfo, Content)>> {
        PgStore::version(self, path, version)
    }
    fn version_at(&self, path: &str, at: Micros) -> Result<Option<(VersionInfo, Content)>> {
        PgStore::version_at(self, path, at)
    }
    fn all_versions(&self, path: &str) -> Result<Vec<(VersionInfo, Content)>> {
        PgStore::all_versions(self, path)
    }
    fn links(&self, path: &str, caller: &Caller) -> Result<(Vec<Link>, Vec<Link>)> {
        PgStore::links(self, path, caller)
    }
    fn tag_counts(
        &self,
        dir: &str,
        caller: &Caller,
        keep: Option<avm_core::storage::Keep<'_>>,
    ) -> Result<Vec<(String, i64)>> {
        PgStore::tag_counts(self, dir, caller, keep)
    }
    fn stats(
        &self,
        dir: &str,
        caller: &Caller,
        keep: Option<avm_core::storage::Keep<'_>>,
    ) -> Result<Value> {
        PgStore::stats(self, dir, caller, keep)
    }
}
