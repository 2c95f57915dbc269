# The operator image. Two stages on one Node.js 24 LTS base: the first installs the production
# dependencies, the second holds only them, the package manifest and the sources (Node strips the
# types at run time: there is no build step). Every instruction is in exec form, so a base
# without a shell (the tests build this file on a minimal base of their own) works too.
ARG NODE_IMAGE=docker.io/library/node:24.21.0-bookworm-slim

FROM ${NODE_IMAGE} AS dependencies
# For a registry behind a TLS-intercepting proxy: the path of a CA bundle mounted into the build.
ARG NODE_EXTRA_CA_CERTS
WORKDIR /build
COPY package.json package-lock.json ./
RUN ["/usr/local/bin/node", "/usr/local/lib/node_modules/npm/bin/npm-cli.js", "ci", "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund"]

FROM ${NODE_IMAGE}
WORKDIR /app
COPY --from=dependencies /build/node_modules ./node_modules
COPY package.json ./
COPY src ./src
ENV NODE_ENV=production
# Node's compile cache, filled here by loading every module the operator imports (`--help`
# loads them and exits). A process that finds all its modules in it never loads the type
# stripper and compiles nothing again: an idle operator holds about 26 MiB less. The cache is
# kept per user ID: it is filled as 65532, the user the chart runs as; any other user works
# too, stripping types as before. It is read-only at run time, which Node accepts.
RUN ["/usr/local/bin/node", "-e", "fs.mkdirSync('/app/.node-compile-cache'); fs.chownSync('/app/.node-compile-cache', 65532, 65532)"]
ENV NODE_COMPILE_CACHE=/app/.node-compile-cache
# Any non-root ID works (the chart sets its own); 65532 is the conventional "nonroot".
USER 65532:65532
RUN ["/usr/local/bin/node", "src/cli/main.ts", "--help"]
ENTRYPOINT ["/usr/local/bin/node", "src/cli/main.ts"]
