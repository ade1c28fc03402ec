// Module protoc-gen-go pins protoc-gen-go, the Go protobuf generator.
module github.com/fornax-edge/fornax/hack/tools/protoc-gen-go

go 1.26.0

require google.golang.org/protobuf v1.36.12
