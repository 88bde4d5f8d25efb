#!/usr/bin/env bash
# Fetches the dashboard's third-party front-end files (uPlot, pinned by
# package-lock.json) and copies them into vendor/, which the Go binary embeds.
# Run it before `go build ./dashboard` for a page with charts; without it the
# binary still builds and the page says the chart library is missing.
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund --loglevel=error
cp node_modules/uplot/dist/uPlot.iife.min.js node_modules/uplot/dist/uPlot.min.css vendor/
cp node_modules/uplot/LICENSE vendor/uPlot.LICENSE
echo "dashboard/web/vendor: $(ls vendor | tr '\n' ' ')"
