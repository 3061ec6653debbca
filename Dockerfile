# attest-sidecar container image.
# Build: docker build -t attest-sidecar .
# Run:   docker run --rm -v /run/spire/sockets:/run/spire/sockets:ro -v $PWD/config:/config:ro \
#          attest-sidecar run --config /config/sidecar.yaml
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json ./
COPY src ./src
COPY test ./test
COPY bench ./bench
COPY proto ./proto
RUN npm ci --no-audit --no-fund && npm prune --omit=dev

FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY bin ./bin
COPY proto ./proto
COPY config ./config
# Durable state (revocations, budget ledger) under /var/lib/attest-sidecar/<name>, owned by the
# unprivileged user; mount a volume there so it survives the container (docs/admin.md).
RUN mkdir -p /var/lib/attest-sidecar && chown node:node /var/lib/attest-sidecar && chmod 700 /var/lib/attest-sidecar
ENV ATTEST_SIDECAR_STATE_DIR=/var/lib/attest-sidecar
# Unprivileged; the Workload API socket is mounted read-only by the platform.
USER node
EXPOSE 15001 15443 15000
# The executable itself, so that the Node flags on its first line apply (see bin/attest-sidecar).
ENTRYPOINT ["/app/bin/attest-sidecar"]
CMD ["run", "--config", "/config/sidecar.yaml"]
