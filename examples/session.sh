#!/usr/bin/env bash
# A short scripted session of the avm CLI on the embedded SQLite store: two agents write
# private and shared memories, search them, move, link, delete and restore, travel back in
# history, and export. Uses a scratch database unless AVM_SESSION_DB names one.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
avm=${AVM_BIN:-$here/target/release/avm}
db=${AVM_SESSION_DB:-$(mktemp -d)/avm.db}
run() { echo "\$ avm $*"; "$avm" --db "$db" "$@"; echo; }

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
run export -o -
echo "database: $db"
