// spiffe-server: a go-spiffe (v2.9.0) mTLS server for the tests, the upstream of an outbound
// route. It takes its identity from the SPIFFE Workload API and accepts only clients that
// present one of the given SPIFFE IDs (tlsconfig.MTLSServerConfig with tlsconfig.AuthorizeID).
//
//	spiffe-server -authorize-id ID[,ID...] [-socket ADDR] [-hint H] [-listen 127.0.0.1:0]
//
// -socket defaults to $SPIFFE_ENDPOINT_SOCKET (unix:///path); -hint picks the SVID with that
// hint. When ready it prints one line on stdout:
//
//	{"type":"listening","address":"127.0.0.1:PORT","spiffe_id":"<its own ID>"}
//
// Every request is answered 200 with JSON of what the server saw: {"method","path","host",
// "proto","headers" (name -> values, Go's canonical names),"peer_id" (from the client
// certificate),"body_bytes"}. A refused handshake is logged on stderr as a JSON line
// {"type":"tls_error","error":...}. SIGTERM or SIGINT: stops accepting, finishes the requests in
// flight (bounded) and exits 0. Exit codes: 2 usage, 4 listen failed, 5 no SVID from the Workload API.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"attest-sidecar.test/spiffe-peers/internal/peer"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// maxBody caps what is read of a request body (only its length is reported).
const maxBody = 16 << 20

func main() {
	fs := flag.NewFlagSet("spiffe-server", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	socketFlag := fs.String("socket", "", "Workload API address")
	hint := fs.String("hint", "", "pick the SVID with this hint")
	authorize := fs.String("authorize-id", "", "the SPIFFE IDs clients may present, comma-separated")
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	if err := fs.Parse(os.Args[1:]); err != nil {
		peer.Fail(peer.ExitUsage, "usage", err)
	}
	allowed, err := peer.ParseIDs(*authorize)
	if err != nil {
		peer.Fail(peer.ExitUsage, "usage", errors.New("-authorize-id: "+err.Error()))
	}
	socket, err := peer.Socket(*socketFlag)
	if err != nil {
		peer.Fail(peer.ExitUsage, "usage", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	source, err := peer.X509Source(ctx, socket, *hint)
	if err != nil {
		peer.Fail(peer.ExitWorkloadAPI, "workload_api", err)
	}
	defer source.Close()
	own, _ := source.GetX509SVID()

	authorizer := tlsconfig.AuthorizeOneOf(allowed...)
	listener, err := net.Listen("tcp", *listen)
	if err != nil {
		peer.Fail(peer.ExitTransport, "listen", err)
	}
	server := &http.Server{
		Handler:           http.HandlerFunc(echo),
		TLSConfig:         tlsconfig.MTLSServerConfig(source, source, authorizer),
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       60 * time.Second,
		ErrorLog:          log.New(tlsErrorLog{}, "", 0),
	}
	served := make(chan error, 1)
	go func() { served <- server.ServeTLS(listener, "", "") }()
	peer.Line(map[string]any{"type": "listening", "address": listener.Addr().String(), "spiffe_id": own.ID.String()})

	select {
	case err := <-served:
		peer.Fail(peer.ExitTransport, "serve", err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := server.Shutdown(shutdown); err != nil {
		server.Close()
	}
}

func echo(w http.ResponseWriter, r *http.Request) {
	n, _ := io.Copy(io.Discard, io.LimitReader(r.Body, maxBody))
	seen := map[string]any{
		"method":     r.Method,
		"path":       r.RequestURI,
		"host":       r.Host,
		"proto":      r.Proto,
		"headers":    r.Header,
		"peer_id":    peerID(r),
		"body_bytes": n,
	}
	body, _ := json.Marshal(seen)
	w.Header().Set("Content-Type", "application/json")
	w.Write(body)
}

func peerID(r *http.Request) string {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return ""
	}
	id, err := x509svid.IDFromCert(r.TLS.PeerCertificates[0])
	if err != nil {
		return ""
	}
	return id.String()
}

// tlsErrorLog writes net/http's server errors (refused handshakes among them) as JSON lines on stderr.
type tlsErrorLog struct{}

func (tlsErrorLog) Write(p []byte) (int, error) {
	b, _ := json.Marshal(map[string]any{"type": "tls_error", "error": strings.TrimSpace(string(p))})
	os.Stderr.Write(append(b, '\n'))
	return len(p), nil
}
