// Package peer holds what both test programs share: the Workload API address, an X509Source
// that picks an SVID by hint, and JSON-line output.
package peer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// Exit codes: tests tell failures apart by them.
const (
	ExitOK          = 0
	ExitUsage       = 2
	ExitHandshake   = 3 // the TLS handshake failed (either side refused the other's certificate)
	ExitTransport   = 4 // any other connection or HTTP failure
	ExitWorkloadAPI = 5 // no SVID or bundle from the Workload API
	ExitJWTInvalid  = 6 // a JWT-SVID did not validate
)

// SourceTimeout bounds the wait for the first X.509-SVID (the agent may not have the entry yet).
const SourceTimeout = 60 * time.Second

// Socket returns the -socket flag's value, or SPIFFE_ENDPOINT_SOCKET when the flag is empty.
func Socket(flagValue string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	if addr, ok := workloadapi.GetDefaultAddress(); ok {
		return addr, nil
	}
	return "", errors.New("no Workload API socket: pass -socket unix:///path or set SPIFFE_ENDPOINT_SOCKET")
}

// X509Source connects to the Workload API and waits (bounded) for the first SVID; with a hint it
// picks the SVID carrying that hint and fails when there is none.
func X509Source(ctx context.Context, socket, hint string) (*workloadapi.X509Source, error) {
	ctx, cancel := context.WithTimeout(ctx, SourceTimeout)
	defer cancel()
	opts := []workloadapi.X509SourceOption{workloadapi.WithClientOptions(workloadapi.WithAddr(socket))}
	if hint != "" {
		opts = append(opts, workloadapi.WithDefaultX509SVIDPicker(func(svids []*x509svid.SVID) *x509svid.SVID {
			for _, s := range svids {
				if s.Hint == hint {
					return s
				}
			}
			return nil
		}))
	}
	source, err := workloadapi.NewX509Source(ctx, opts...)
	if err != nil {
		return nil, err
	}
	if _, err := source.GetX509SVID(); err != nil {
		source.Close()
		return nil, fmt.Errorf("no X.509-SVID with hint %q: %w", hint, err)
	}
	return source, nil
}

// ParseIDs parses a comma-separated list of SPIFFE IDs.
func ParseIDs(list string) ([]spiffeid.ID, error) {
	var ids []spiffeid.ID
	for _, s := range strings.Split(list, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		id, err := spiffeid.FromString(s)
		if err != nil {
			return nil, fmt.Errorf("bad SPIFFE ID %q: %w", s, err)
		}
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		return nil, errors.New("no SPIFFE ID given")
	}
	return ids, nil
}

var stdoutMu sync.Mutex

// Line prints one JSON object on its own stdout line.
func Line(v map[string]any) {
	b, err := json.Marshal(v)
	if err != nil {
		b, _ = json.Marshal(map[string]any{"type": "error", "kind": "internal", "error": err.Error()})
	}
	stdoutMu.Lock()
	defer stdoutMu.Unlock()
	os.Stdout.Write(append(b, '\n'))
}

// Fail prints an error line and exits with code.
func Fail(code int, kind string, err error) {
	Line(map[string]any{"type": "error", "kind": kind, "error": err.Error()})
	os.Exit(code)
}
