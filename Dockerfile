# Build: SQLite, libpq and OpenSSL are compiled in, so the runtime image needs no libraries of its own.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked && cp target/release/allot /allot

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /data --create-home allot
COPY --from=build /allot /usr/local/bin/allot
USER allot
WORKDIR /data
ENV ALLOT_LISTEN=0.0.0.0:8080 \
    DATABASE_URL=/data/allot.db \
    ALLOT_LOG_FORMAT=json
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD curl -fsS http://127.0.0.1:8080/readyz || exit 1
ENTRYPOINT ["allot"]
CMD ["serve"]
