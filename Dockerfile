# fornaxd, fornaxctl and fornax-cni as static binaries on a distroless base. Build from
# the repository root:
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) -t ghcr.io/fornax-edge/fornax:dev .
# The manifests in config/deploy run it (fornaxctl init --print / join --print).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# What 'fornaxd --version' and the EdgeClusters' agentVersion say (.git is
# not in the build context, so nothing else can).
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X github.com/fornax-edge/fornax/internal/version.Version=${VERSION}" -o /out/ ./cmd/fornaxd ./cmd/fornaxctl ./cmd/fornax-cni

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/fornaxd /out/fornaxctl /out/fornax-cni /usr/local/bin/
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/fornaxd"]
