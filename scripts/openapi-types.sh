#!/usr/bin/env bash
# npm run openapi:types: regenerates test/support/openapi.d.ts, the TypeScript types of the OpenAPI document
# (openapi-typescript), which the generated-client test uses. With AUTH=required, the fuller document:
# the same paths, plus the 401 and 403 answers. test/openapi-client.test.ts fails when the file is stale.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# from an environment of its own: a CORS_ORIGIN or RATE_LIMIT_MAX of the caller would change the document
env -i PATH="$PATH" HOME="${HOME:-/tmp}" AUTH=required npm run -s openapi -- "$work/openapi.json"
npx openapi-typescript "$work/openapi.json" --output test/support/openapi.d.ts
npx prettier --write test/support/openapi.d.ts
