# receiptdb-operator image: one static binary (controller, CRD printer, Job entrypoints).
# Jobs copy this binary into the member image with `receiptdb-operator copy-binary`, so the
# final image needs no shell and no `cp`.

FROM docker.io/library/rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
RUN cargo build --release --locked --target x86_64-unknown-linux-musl -p receiptdb-operator \
 && install -D -m 0755 target/x86_64-unknown-linux-musl/release/receiptdb-operator /out/receiptdb-operator

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/receiptdb-operator /usr/local/bin/receiptdb-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/receiptdb-operator"]
CMD ["run"]
