// grpc-gateway in front of batchd's gRPC server: the ceiling for the REST figure.
package main

import (
	"context"
	"flag"
	"log"
	"net/http"

	gw "batchd/gen/go/batchd/v1"

	"github.com/grpc-ecosystem/grpc-gateway/runtime"
	"google.golang.org/grpc"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8081", "host:port to serve REST on")
	backend := flag.String("backend", "127.0.0.1:50051", "host:port of the gRPC server")
	flag.Parse()
	ctx := context.Background()
	mux := runtime.NewServeMux()
	opts := []grpc.DialOption{grpc.WithInsecure()}
	if err := gw.RegisterBatchServiceHandlerFromEndpoint(ctx, mux, *backend, opts); err != nil {
		log.Fatal(err)
	}
	log.Fatal(http.ListenAndServe(*listen, mux))
}
