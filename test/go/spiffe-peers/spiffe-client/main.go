// spiffe-client: a go-spiffe (v2.9.0) workload for the tests. It takes its identity from the
// SPIFFE Workload API and prints one JSON object per line on stdout, so that tests can parse it.
//
//	spiffe-client https -server-id ID [-socket ADDR] [-hint H] [-timeout D] [-H 'Name: value']... [-d BODY] REQUEST...
//	    Calls each REQUEST in turn over one mTLS client (tlsconfig.MTLSClientConfig with
//	    tlsconfig.AuthorizeID(ID): the server must present exactly that SPIFFE ID). A REQUEST is
//	    a URL (GET) or "METHOD URL" in one argument. Prints {"type":"svid","spiffe_id","hint",
//	    "cert_sha256" (hex SHA-256 of its leaf)}, then per request {"type":"response","method",
//	    "url","status","headers","body"} or {"type":"error","kind":"handshake"|"tls_alert"|
//	    "transport","method","url","error"}.
//	spiffe-client jwt-fetch -audience A[,B...] [-socket ADDR] [-hint H]
//	    Fetches a JWT-SVID for the audiences: {"type":"jwt_svid","spiffe_id","audience","expiry","hint","token"}.
//	spiffe-client jwt-validate -audience A [-via bundles|api] [-socket ADDR] TOKEN
//	    Validates TOKEN for audience A, by default locally against the Workload API's JWT bundles
//	    (jwtsvid.ParseAndValidate); with -via api by the agent's ValidateJWTSVID call.
//	    Prints {"type":"jwt_valid","spiffe_id","audience","expiry","claims"}.
//
// -socket defaults to $SPIFFE_ENDPOINT_SOCKET (unix:///path). -hint picks the SVID with that
// hint. Failures print {"type":"error","kind":...,"error":...} and exit with: 2 usage,
// 3 a TLS handshake failed (our check of the server, or the server's alert about our
// certificate), 4 another connection or HTTP failure, 5 no SVID or bundle from the Workload API,
// 6 the JWT-SVID is invalid. 0 means every request got an HTTP response (any status).
package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"attest-sidecar.test/spiffe-peers/internal/peer"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// maxBody caps what is read and printed of a response body.
const maxBody = 1 << 20

type headerList []string

func (h *headerList) String() string     { return strings.Join(*h, ", ") }
func (h *headerList) Set(v string) error { *h = append(*h, v); return nil }

func main() {
	if len(os.Args) < 2 {
		usage(errors.New("a command is required: https, jwt-fetch or jwt-validate"))
	}
	commands := map[string]func([]string){"https": runHTTPS, "jwt-fetch": runJWTFetch, "jwt-validate": runJWTValidate}
	run, ok := commands[os.Args[1]]
	if !ok {
		usage(fmt.Errorf("unknown command %q", os.Args[1]))
	}
	run(os.Args[2:])
}

func usage(err error) { peer.Fail(peer.ExitUsage, "usage", err) }

func parse(fs *flag.FlagSet, args []string) {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		usage(err)
	}
}

func socketOf(flagValue string) string {
	socket, err := peer.Socket(flagValue)
	if err != nil {
		usage(err)
	}
	return socket
}

// handshakeError marks a failure of the TLS handshake itself (as opposed to what happened after).
type handshakeError struct{ err error }

func (e *handshakeError) Error() string { return "TLS handshake: " + e.err.Error() }
func (e *handshakeError) Unwrap() error { return e.err }

func runHTTPS(args []string) {
	fs := flag.NewFlagSet("https", flag.ContinueOnError)
	socket := fs.String("socket", "", "Workload API address")
	hint := fs.String("hint", "", "pick the SVID with this hint")
	serverID := fs.String("server-id", "", "the SPIFFE ID the server must present")
	timeout := fs.Duration("timeout", 30*time.Second, "per-request bound")
	body := fs.String("d", "", "request body")
	var headers headerList
	fs.Var(&headers, "H", "request header 'Name: value' (repeatable)")
	parse(fs, args)
	if fs.NArg() == 0 {
		usage(errors.New("no request given"))
	}
	ids, err := peer.ParseIDs(*serverID)
	if err != nil || len(ids) != 1 {
		usage(fmt.Errorf("-server-id must be one SPIFFE ID: %v", err))
	}

	ctx := context.Background()
	source, err := peer.X509Source(ctx, socketOf(*socket), *hint)
	if err != nil {
		peer.Fail(peer.ExitWorkloadAPI, "workload_api", err)
	}
	defer source.Close()
	own, _ := source.GetX509SVID()
	leaf := sha256.Sum256(own.Certificates[0].Raw)
	peer.Line(map[string]any{"type": "svid", "spiffe_id": own.ID.String(), "hint": own.Hint, "cert_sha256": hex.EncodeToString(leaf[:])})

	tlsConfig := tlsconfig.MTLSClientConfig(source, source, tlsconfig.AuthorizeID(ids[0]))
	dialer := &net.Dialer{Timeout: *timeout}
	transport := &http.Transport{
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			raw, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			conn := tls.Client(raw, tlsConfig.Clone())
			if err := conn.HandshakeContext(ctx); err != nil {
				raw.Close()
				return nil, &handshakeError{err}
			}
			return conn, nil
		},
		ResponseHeaderTimeout: *timeout,
	}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: *timeout}

	exit := peer.ExitOK
	for _, spec := range fs.Args() {
		method, url := "GET", spec
		if m, u, ok := strings.Cut(spec, " "); ok {
			method, url = m, u
		}
		code := doRequest(client, method, url, *body, headers)
		if code != peer.ExitOK && (exit == peer.ExitOK || code == peer.ExitHandshake) {
			exit = code
		}
	}
	source.Close()
	os.Exit(exit)
}

func doRequest(client *http.Client, method, url, body string, headers headerList) int {
	var reader io.Reader
	if body != "" {
		reader = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, reader)
	if err != nil {
		usage(err)
	}
	for _, h := range headers {
		name, value, ok := strings.Cut(h, ":")
		if !ok {
			usage(fmt.Errorf("bad header %q (want 'Name: value')", h))
		}
		req.Header.Add(strings.TrimSpace(name), strings.TrimSpace(value))
	}
	res, err := client.Do(req)
	if err != nil {
		kind, code := classify(err)
		peer.Line(map[string]any{"type": "error", "kind": kind, "method": method, "url": url, "error": err.Error()})
		return code
	}
	defer res.Body.Close()
	got, err := io.ReadAll(io.LimitReader(res.Body, maxBody))
	if err != nil {
		kind, code := classify(err)
		peer.Line(map[string]any{"type": "error", "kind": kind, "method": method, "url": url, "status": res.StatusCode, "error": err.Error()})
		return code
	}
	peer.Line(map[string]any{"type": "response", "method": method, "url": url, "status": res.StatusCode, "headers": res.Header, "body": string(got)})
	return peer.ExitOK
}

// classify tells a refused handshake (ours, or the server's alert after a TLS 1.3 handshake that
// looked complete to us) from other failures.
func classify(err error) (string, int) {
	var hs *handshakeError
	if errors.As(err, &hs) {
		return "handshake", peer.ExitHandshake
	}
	if strings.Contains(err.Error(), "remote error: tls:") {
		return "tls_alert", peer.ExitHandshake
	}
	return "transport", peer.ExitTransport
}

func jwtClient(socket string) (*workloadapi.Client, context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), peer.SourceTimeout)
	client, err := workloadapi.New(ctx, workloadapi.WithAddr(socketOf(socket)))
	if err != nil {
		cancel()
		peer.Fail(peer.ExitWorkloadAPI, "workload_api", err)
	}
	return client, ctx, cancel
}

func runJWTFetch(args []string) {
	fs := flag.NewFlagSet("jwt-fetch", flag.ContinueOnError)
	socket := fs.String("socket", "", "Workload API address")
	hint := fs.String("hint", "", "pick the JWT-SVID with this hint")
	audience := fs.String("audience", "", "audiences, comma-separated")
	parse(fs, args)
	var auds []string
	for _, a := range strings.Split(*audience, ",") {
		if a = strings.TrimSpace(a); a != "" {
			auds = append(auds, a)
		}
	}
	if len(auds) == 0 {
		usage(errors.New("-audience is required"))
	}
	client, ctx, cancel := jwtClient(*socket)
	defer cancel()
	defer client.Close()
	svids, err := client.FetchJWTSVIDs(ctx, jwtsvid.Params{Audience: auds[0], ExtraAudiences: auds[1:]})
	if err != nil {
		peer.Fail(peer.ExitWorkloadAPI, "workload_api", err)
	}
	var svid *jwtsvid.SVID
	for _, s := range svids {
		if *hint == "" || s.Hint == *hint {
			svid = s
			break
		}
	}
	if svid == nil {
		peer.Fail(peer.ExitWorkloadAPI, "workload_api", fmt.Errorf("no JWT-SVID with hint %q among %d", *hint, len(svids)))
	}
	peer.Line(map[string]any{"type": "jwt_svid", "spiffe_id": svid.ID.String(), "audience": svid.Audience, "expiry": svid.Expiry.UTC().Format(time.RFC3339), "hint": svid.Hint, "token": svid.Marshal()})
}

func runJWTValidate(args []string) {
	fs := flag.NewFlagSet("jwt-validate", flag.ContinueOnError)
	socket := fs.String("socket", "", "Workload API address")
	audience := fs.String("audience", "", "the audience the token must name")
	via := fs.String("via", "bundles", "bundles: validate here against the JWT bundles; api: ask the agent (ValidateJWTSVID)")
	parse(fs, args)
	if *audience == "" || fs.NArg() != 1 {
		usage(errors.New("-audience and one TOKEN are required"))
	}
	token := fs.Arg(0)
	client, ctx, cancel := jwtClient(*socket)
	defer cancel()
	defer client.Close()
	var svid *jwtsvid.SVID
	var err error
	switch *via {
	case "bundles":
		bundles, ferr := client.FetchJWTBundles(ctx)
		if ferr != nil {
			peer.Fail(peer.ExitWorkloadAPI, "workload_api", ferr)
		}
		svid, err = jwtsvid.ParseAndValidate(token, bundles, []string{*audience})
	case "api":
		svid, err = client.ValidateJWTSVID(ctx, token, *audience)
	default:
		usage(fmt.Errorf("-via must be bundles or api, not %q", *via))
	}
	if err != nil {
		client.Close()
		peer.Fail(peer.ExitJWTInvalid, "jwt_invalid", err)
	}
	peer.Line(map[string]any{"type": "jwt_valid", "spiffe_id": svid.ID.String(), "audience": svid.Audience, "expiry": svid.Expiry.UTC().Format(time.RFC3339), "claims": svid.Claims})
}
