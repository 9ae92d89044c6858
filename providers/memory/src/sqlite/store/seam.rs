//! The SQLite store as the memory provider's [`Engine`](crate::engine::Engine): each method
//! forwards to the store's own.

use super::*;

impl crate::engine::Engine for Store {
    fn apply(&self, op: WriteOp) -> Result<Outcome> {
        Store::apply(self, op)
    }
    fn apply_many(&self, ops: Vec<WriteOp>) -> Vec<Result<Outcome>> {
        Store::apply_many(self, ops)
    }
    fn sync(&self) -> Result<()> {
        Store::sync(self)
    }
    fn get(&self, path: &str) -> Result<Option<Arc<Node>>> {
        Store::get(self, path)
    }
    fn peek(&self, path: &str) -> Result<Option<Arc<Node>>> {
        Store::peek(self, path)
    }
    fn expired_pending(&self, path: &str) -> Result<bool> {
        Store::expired_pending(self, path)
    }
    fn kind(&self, path: &str) -> Result<Option<NodeKind>> {
        Store::kind(self, path)
    }
    fn has_children(&self, dir: &str) -> Result<bool> {
        Store::has_children(self, dir)
    }
    fn children(
        &self,
        dir: &str,
        caller: &Caller,
        offset: usize,
        limit: Option<usize>,
    ) -> Result<Vec<ChildEntry>> {
        Store::children(self, dir, caller, offset, limit)
    }
    fn descendants(
        &self,
        dir: &str,
        caller: &Caller,
        offset: usize,
        limit: Option<usize>,
    ) -> Result<Vec<Arc<Node>>> {
        Store::descendants(self, dir, caller, offset, limit)
    }
    fn descendants_after(
        &self,
        dir: &str,
        caller: &Caller,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Arc<Node>>> {
        Store::descendants_after(self, dir, caller, after, limit)
    }
    fn dir_info(&self, dir: &str, caller: &Caller) -> Result<Option<(Attrs, u64)>> {
        Store::dir_info(self, dir, caller)
    }
    fn capacity(&self) -> Result<avm_core::Capacity> {
        Store::capacity(self)
    }
    fn usage(&self, dir: &str) -> Result<(u64, u64)> {
        Store::usage(self, dir)
    }
    fn mark_of(&self, agent: &str, path: &str) -> Result<i64> {
        Store::mark_of(self, agent, path)
    }
    fn search(&self, scope: &str, caller: &Caller, query: &str, limit: usize) -> Result<Vec<Hit>> {
        Store::search(self, scope, caller, query, limit)
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
        Store::search_within(self, scopes, caller, extra, query, limit, snippets)
    }
    fn history(&self, path: &str, limit: usize) -> Result<Vec<VersionInfo>> {
        Store::history(self, path, limit)
    }
    fn version(&self, path: &str, version: i64) -> Result<Option<(VersionInfo, Content)>> {
        Store::version(self, path, version)
    }
    fn version_at(&self, path: &str, at: Micros) -> Result<Option<(VersionInfo, Content)>> {
        Store::version_at(self, path, at)
    }
    fn all_versions(&self, path: &str) -> Result<Vec<(VersionInfo, Content)>> {
        Store::all_versions(self, path)
    }
    fn links(&self, path: &str, caller: &Caller) -> Result<(Vec<Link>, Vec<Link>)> {
        Store::links(self, path, caller)
    }
    fn tag_counts(
        &self,
        dir: &str,
        caller: &Caller,
        keep: Option<avm_core::storage::Keep<'_>>,
    ) -> Result<Vec<(String, i64)>> {
        Store::tag_counts(self, dir, caller, keep)
    }
    fn stats(
        &self,
        dir: &str,
        caller: &Caller,
        keep: Option<avm_core::storage::Keep<'_>>,
    ) -> Result<Value> {
        Store::stats(self, dir, caller, keep)
    }
}
