//! The PostgreSQL engine's tables, as numbered migrations ([`avm_postgres::migrate`]).
//!
//! The same tables as the SQLite engine's, in PostgreSQL's types: times are microseconds
//! since the epoch (`bigint`), metadata `json` (kept as written, keys in their order) and tags
//! `jsonb`, paths compared byte by byte
//! (`COLLATE "C"`, so the `[dir/, dir0)` subtree ranges hold whatever the database's locale).
//! Content is text or bytes: `content` holds text, `bytes` binary content, never both. The
//! full-text index is a `tsvector` of avm's own tokens (words, and CJK unigrams and bigrams),
//! since PostgreSQL's parser keeps a CJK run as one token. Visibility is the SQL function
//! `avm_visible`, the same rule as [`avm_core::provider::visible_to`].

use avm_postgres::Migration;

/// The memory engine's component name in `avm_migrations`.
pub const COMPONENT: &str = "memory";

/// Every migration, oldest first.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "memory store",
    sql: V1,
}];

const V1: &str = r#"
CREATE TABLE nodes(
  id          bigserial PRIMARY KEY,
  path        text COLLATE "C" NOT NULL UNIQUE,
  content     text,
  bytes       bytea,
  meta        json    NOT NULL DEFAULT '{}',
  tags        jsonb   NOT NULL DEFAULT '[]',
  importance  double precision NOT NULL DEFAULT 0.5,
  author      text,
  created_at  bigint  NOT NULL,
  updated_at  bigint  NOT NULL,
  version     bigint  NOT NULL,
  hash        text    NOT NULL,
  expires_at  bigint,
  ftype       text,
  mode        bigint,
  uid         bigint,
  gid         bigint,
  mtime_ns    bigint,
  ctime_ns    bigint,
  atime_ns    bigint,
  -- avm's tokens of the indexed text (crate::postgres::search::document), '' for binary.
  tsv         tsvector NOT NULL DEFAULT '',
  CHECK ((content IS NULL) <> (bytes IS NULL))
);
CREATE INDEX nodes_expires ON nodes(expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX nodes_updated ON nodes(updated_at);
CREATE INDEX nodes_hash ON nodes(hash);
CREATE INDEX nodes_remember ON nodes((meta->>'remember_hash'));
CREATE INDEX nodes_tsv ON nodes USING gin(tsv);

-- Read times apart from nodes, so recording a read does not rewrite the node's row.
CREATE TABLE access(
  node_id bigint PRIMARY KEY,
  at      bigint NOT NULL
);
CREATE TABLE node_tags(
  tag     text   NOT NULL,
  node_id bigint NOT NULL,
  PRIMARY KEY(tag, node_id)
);
CREATE INDEX node_tags_node ON node_tags(node_id);
CREATE TABLE versions(
  id      bigserial PRIMARY KEY,
  path    text COLLATE "C" NOT NULL,
  version bigint NOT NULL,
  kind    text   NOT NULL,
  content text,
  bytes   bytea,
  hash    text   NOT NULL,
  author  text,
  at      bigint NOT NULL,
  note    text,
  UNIQUE(path, version),
  CHECK ((content IS NULL) <> (bytes IS NULL))
);
CREATE TABLE links(
  source     text COLLATE "C" NOT NULL,
  target     text COLLATE "C" NOT NULL,
  kind       text NOT NULL,
  weight     double precision NOT NULL DEFAULT 1.0,
  created_at bigint NOT NULL,
  PRIMARY KEY(source, target, kind)
);
CREATE INDEX links_target ON links(target);
-- The ordered change stream: rows are inserted under the engine's write lock, so sequence
-- numbers are in commit order and a reader of seq > n never passes over a later commit.
CREATE TABLE events(
  seq     bigserial PRIMARY KEY,
  at      bigint NOT NULL,
  kind    text   NOT NULL,
  path    text COLLATE "C" NOT NULL,
  agent   text,
  version bigint,
  detail  text
);
CREATE TABLE topics(
  topic   text   NOT NULL,
  node_id bigint NOT NULL,
  weight  double precision NOT NULL,
  PRIMARY KEY(topic, node_id)
);
CREATE INDEX topics_node ON topics(node_id);
CREATE INDEX topics_weight ON topics(topic, weight DESC, node_id);
CREATE TABLE topic_docs(
  node_id   bigint PRIMARY KEY,
  signature text   NOT NULL
);
CREATE TABLE cursors(
  name text PRIMARY KEY,
  seq  bigint NOT NULL
);
INSERT INTO cursors(name, seq) VALUES ('vectors_deleted', 0);
CREATE TABLE telemetry(
  id               bigserial PRIMARY KEY,
  at               bigint NOT NULL,
  op               text   NOT NULL,
  agent            text,
  query            text,
  tokens_returned  bigint NOT NULL,
  tokens_available bigint NOT NULL,
  results          bigint NOT NULL,
  latency_us       bigint NOT NULL
);
CREATE INDEX telemetry_agent ON telemetry(agent, at);
CREATE TABLE dirs(
  path text COLLATE "C" PRIMARY KEY
);
CREATE TABLE marks(
  agent   text   NOT NULL,
  node_id bigint NOT NULL,
  version bigint NOT NULL,
  PRIMARY KEY(agent, node_id)
);
CREATE TABLE tells(
  id         bigserial PRIMARY KEY,
  sender     text   NOT NULL,
  recipient  text   NOT NULL,
  content    text   NOT NULL,
  priority   text   NOT NULL,
  created_at bigint NOT NULL,
  expires_at bigint
);
CREATE INDEX tells_recipient ON tells(recipient, created_at);
CREATE TABLE tell_reads(
  tell_id bigint NOT NULL,
  agent   text   NOT NULL,
  at      bigint NOT NULL,
  PRIMARY KEY(tell_id, agent)
);
CREATE TABLE vectors(
  node_id bigint PRIMARY KEY,
  model   text   NOT NULL,
  hash    text   NOT NULL,
  vec     bytea  NOT NULL,
  stamp   bigint NOT NULL
);
CREATE INDEX vectors_stamp ON vectors(model, stamp);
CREATE TABLE dir_attrs(
  path     text COLLATE "C" PRIMARY KEY,
  mode     bigint,
  uid      bigint,
  gid      bigint,
  mtime_ns bigint,
  ctime_ns bigint,
  atime_ns bigint
);

-- What goes with a node when its row is deleted (a hard delete, a purge): its topics, read
-- markers and vector (counting vector deletions, which the vector index follows).
CREATE FUNCTION avm_node_dropped() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM topics WHERE node_id = OLD.id;
  DELETE FROM topic_docs WHERE node_id = OLD.id;
  DELETE FROM marks WHERE node_id = OLD.id;
  IF EXISTS (SELECT 1 FROM vectors WHERE node_id = OLD.id) THEN
    UPDATE cursors SET seq = seq + 1 WHERE name = 'vectors_deleted';
    DELETE FROM vectors WHERE node_id = OLD.id;
  END IF;
  DELETE FROM access WHERE node_id = OLD.id;
  RETURN OLD;
END $$;
CREATE TRIGGER nodes_dropped AFTER DELETE ON nodes FOR EACH ROW EXECUTE FUNCTION avm_node_dropped();

-- The owner of the private namespace a path is in (inside /trash and /archive copies too),
-- as avm_core::provider::private_owner.
CREATE FUNCTION avm_private_owner(p text) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN q LIKE '/memory/private/%' THEN split_part(substr(q, 17), '/', 1) END
  FROM (SELECT regexp_replace(p, '^(/(trash|archive)(?=/))+', '') AS q) s
$$;

-- Whether `agent` (NULL: the operator) may see a node: avm_core::provider::visible. Most nodes
-- are shared with everyone: their metadata is only parsed when it names `shared_with`.
CREATE FUNCTION avm_visible(p text, author text, meta json, agent text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT agent IS NULL OR (
    coalesce(avm_private_owner(p) = agent, true)
    AND (
      strpos(meta::text, '"shared_with"') = 0
      OR json_typeof(meta->'shared_with') IS DISTINCT FROM 'array'
      OR author = agent
      OR NOT EXISTS (
        SELECT 1 FROM json_array_elements(meta->'shared_with') x WHERE json_typeof(x) = 'string'
      )
      OR EXISTS (
        SELECT 1 FROM json_array_elements(meta->'shared_with') x
        WHERE json_typeof(x) = 'string' AND x #>> '{}' = agent
      )
    )
  )
$$;
"#;
