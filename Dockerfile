# kubeinvoke server image: built in a full Rust image, run from a slim Debian as a non-root user.
#   docker build -t kubeinvoke:latest .
# The image serves the API; with `--executor kubernetes` commands run as Pods in their clusters,
# so it needs no sandbox tools. For `--executor local` it carries bubblewrap, bash and kubectl-free
# basics; mount or bake in the kubectl/helm your commands need.

FROM rust:1-bookworm AS build
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nodejs npm \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release -p kubeinvoke && strip target/release/kubeinvoke

FROM debian:bookworm-slim
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates bubblewrap bash coreutils \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --user-group --home-dir /var/lib/kubeinvoke --create-home kubeinvoke
COPY --from=build /src/target/release/kubeinvoke /usr/local/bin/kubeinvoke
USER 10001:10001
EXPOSE 8443
ENTRYPOINT ["/usr/local/bin/kubeinvoke"]
CMD ["serve", "--listen=0.0.0.0:8443", "--data-dir=/var/lib/kubeinvoke"]
