# attest-sidecar container image (docs/image.md).
#
#   podman build -t attest-sidecar .                     # or docker build; Node from a registry
#   scripts/build-image.sh                               # no registry: a locally assembled Node base
#
# NODE_IMAGE is the Node base of both stages: any image with node >= 20.18.1 on PATH, npm, and
# a POSIX shell (the official node:*-bookworm-slim images; scripts/build-image.sh assembles one).
ARG NODE_IMAGE=node:20-bookworm-slim

# ---- build: compile src/ only (tsconfig.build.json), then drop the dev dependencies ----
FROM ${NODE_IMAGE} AS build
# Only where the network to the npm registry goes through a TLS-inspecting proxy: the path of its
# CA bundle, mounted into the build (scripts/build-image.sh does it). Unset, Node's own roots.
ARG NODE_EXTRA_CA_CERTS
WORKDIR /build
COPY package.json package-lock.json ./
# --ignore-scripts: `prepare` would compile the whole tree with tsconfig.json (tests included);
# no dependency needs an install script to work (protobufjs's only checks its version).
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npx tsc -p tsconfig.build.json \
 && npm prune --omit=dev --ignore-scripts --no-audit --no-fund \
 && rm -rf node_modules/.package-lock.json node_modules/.bin

# ---- runtime: compiled JavaScript, production dependencies, the .proto files, nothing else ----
FROM ${NODE_IMAGE}
WORKDIR /app
# Root-owned and not writable by the sidecar's user. package.json and proto/ are read at run
# time (the Workload API and SPIRE Entry API definitions are loaded from proto/).
COPY package.json ./
COPY proto ./proto
COPY --from=build /build/node_modules ./node_modules
COPY --from=build /build/dist/src ./dist/src
# The contract's paths (docs/image.md): config (a read-only ConfigMap mount), state (the only
# writable place: an emptyDir or a PVC), and the SPIFFE CSI driver's Workload API socket.
RUN mkdir -p /etc/attest-sidecar /spiffe-workload-api /var/lib/attest-sidecar \
 && chown 10001:10001 /var/lib/attest-sidecar \
 && chmod 0700 /var/lib/attest-sidecar
ENV NODE_ENV=production \
    ATTEST_SIDECAR_STATE_DIR=/var/lib/attest-sidecar \
    SPIFFE_ENDPOINT_SOCKET=unix:///spiffe-workload-api/spire-agent.sock
# A numeric user with no entry in /etc/passwd: Kubernetes' runAsNonRoot can check it.
USER 10001:10001
# outbound proxy, inbound mTLS, admin (loopback only), health (pod IP)
EXPOSE 15001 15443 15000 15021
# node itself (found on PATH, no /usr/bin/env), with the flags bin/attest-sidecar's first line
# passes: a fixed 2 x 8 MiB young generation (they work only on the command line).
ENTRYPOINT ["node", "--min-semi-space-size=8", "--max-semi-space-size=8", "/app/dist/src/cli/main.js"]
CMD ["run", "--config", "/etc/attest-sidecar/sidecar.yaml"]
