// Module protoc-gen-go-grpc pins protoc-gen-go-grpc, the Go gRPC service generator.
module github.com/fornax-edge/fornax/hack/tools/protoc-gen-go-grpc

go 1.26.0

require google.golang.org/grpc/cmd/protoc-gen-go-grpc v1.6.2

require google.golang.org/protobuf v1.36.11 // indirect
