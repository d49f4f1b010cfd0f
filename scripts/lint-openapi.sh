#!/usr/bin/env bash
# npm run openapi:lint: exports the OpenAPI document as a deployment serves it, with AUTH=off (the default)
# and with AUTH=required, and lints both with Redocly (redocly.yaml) and Spectral (.spectral.yaml).
# Fails on any error or warning of either tool.
set -euo pipefail
cd "$(dirname "$0")/.."
export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for auth in off required; do
  file="$work/openapi-auth-$auth.json"
  AUTH=$auth npm run -s openapi -- "$file"
  npx redocly lint --config redocly.yaml "$file"
  npx spectral lint --ruleset .spectral.yaml --fail-severity=warn "$file"
done
