#!/usr/bin/env bash
# Bundle the dashboard into vmhost/api/dashboard_files (committed: the agent serves it offline, with no npm at
# run time). Needs node and npm; versions are pinned by package-lock.json.
set -euo pipefail
cd "$(dirname "$0")"
out=../vmhost/api/dashboard_files
npm ci --no-audit --no-fund
rm -rf "$out" && mkdir -p "$out"
# split: what a page needs only on demand (noVNC) is a chunk of its own, loaded by import() when first used
npx esbuild src/app.js --bundle --minify --format=esm --target=es2020 --splitting --outdir="$out" \
    --entry-names="[name]" --chunk-names="chunk-[hash]" --legal-comments=eof
npx esbuild src/app.css --bundle --minify --outfile="$out/app.css"
cp src/index.html "$out/index.html"
