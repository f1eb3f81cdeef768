package signaling

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"testing"

	"github.com/matinee-dev/matinee/room"
)

// FuzzParseRequest decodes a WebSocket frame as the server does, then its
// params into the shapes the methods use. A request that is accepted is
// a JSON-RPC 2.0 call with a method and a string or number id, and
// written back it reads the same; every refusal carries a JSON-RPC code.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"join","params":{"room":"movie-night","name":"Ann","password":"x"}}`,
		`{"jsonrpc":"2.0","id":"a7","method":"setPreferredLayers","params":{"consumerId":"c1","spatialLayer":2}}`,
		`{"jsonrpc":"2.0","method":"chat","params":{"text":"hi"}}`,
		`{"jsonrpc":"2.0","id":null,"method":"leave"}`,
		`[{"jsonrpc":"2.0","id":1,"method":"join"}]`,
		`{"jsonrpc":"2.0","id":{},"method":"join"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req, rerr := parseRequest(data)
		if rerr != nil {
			switch rerr.Code {
			case CodeParseError, CodeInvalidRequest:
			default:
				t.Fatalf("refused with code %d", rerr.Code)
			}
			return
		}
		if req.JSONRPC != "2.0" || req.Method == "" {
			t.Fatalf("accepted %+v", req)
		}
		out, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		again, rerr := parseRequest(out)
		if rerr != nil || again.Method != req.Method || !sameJSON(again.ID, req.ID) || !sameJSON(again.Params, req.Params) {
			t.Fatalf("%s written back as %s reads %+v (%v)", data, out, again, rerr)
		}
		var join struct {
			Room     string `json:"room"`
			Name     string `json:"name"`
			Password string `json:"password"`
			Token    string `json:"token"`
		}
		var layers struct {
			ConsumerID   string `json:"consumerId"`
			SpatialLayer *int   `json:"spatialLayer"`
			Layers       []int  `json:"layers"`
			Muted        bool   `json:"muted"`
		}
		for _, v := range []any{&join, &layers} {
			if perr := decodeParams(req.Params, v); perr != nil {
				if perr.Code != CodeInvalidParams {
					t.Fatalf("params refused with code %d", perr.Code)
				}
				continue
			}
			enc, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			if perr := decodeParams(enc, v); perr != nil {
				t.Fatalf("params written back as %s refused: %v", enc, perr)
			}
			if enc2, _ := json.Marshal(v); !bytes.Equal(enc, enc2) {
				t.Fatalf("params round trip: %s then %s", enc, enc2)
			}
		}
	})
}

// sameJSON compares two JSON values by what they decode to (Marshal
// escapes some characters that the input may have had plain).
func sameJSON(a, b json.RawMessage) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	decode := func(m json.RawMessage) (any, error) {
		d := json.NewDecoder(bytes.NewReader(m))
		d.UseNumber()
		var v any
		err := d.Decode(&v)
		return v, err
	}
	va, ea := decode(a)
	vb, eb := decode(b)
	return ea == nil && eb == nil && reflect.DeepEqual(va, vb)
}

// recordConn is a conn that notes the one call made on it.
type recordConn struct{ calls int }

func (c *recordConn) Unsubscribe(string) error                         { c.calls++; return nil }
func (c *recordConn) PauseConsumer(string, bool) error                 { c.calls++; return nil }
func (c *recordConn) SetPreferredLayer(string, int) error              { c.calls++; return nil }
func (c *recordConn) TransportAnswer(string, string) error             { c.calls++; return nil }
func (c *recordConn) RestartICE(string) error                          { c.calls++; return nil }
func (c *recordConn) AddICECandidate(string, *room.ICECandidate) error { c.calls++; return nil }

// FuzzConnRequests: the params of the requests on a connection's
// transports and consumers (remote input, parsed before any member is
// looked for) are refused with "invalid params" or make one call; never
// anything else.
func FuzzConnRequests(f *testing.F) {
	names := make([]string, 0, len(connRequests))
	for name := range connRequests {
		names = append(names, name)
	}
	slices.Sort(names)
	for i, p := range []string{
		`{"consumerId":"c1"}`, `{"consumerId":"c1"}`, `{"consumerId":"c1"}`,
		`{"transportId":"t1","candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 9 typ host","sdpMid":"0","sdpMLineIndex":0}}`,
		`{"transportId":"t1"}`, `{"consumerId":"c1","spatialLayer":2}`, `{"transportId":"t1","sdp":"v=0"}`,
		`{"consumerId":""}`, `[]`, `null`, `{"spatialLayer":"x"}`,
	} {
		f.Add(uint8(i), []byte(p))
	}
	f.Fuzz(func(t *testing.T, which uint8, params []byte) {
		name := names[int(which)%len(names)]
		apply, err := connRequests[name](params)
		if err != nil {
			var re *rpcError
			if !errors.As(err, &re) || re.Code != CodeInvalidParams {
				t.Fatalf("%s %q: refused with %v, want invalid params", name, params, err)
			}
			return
		}
		c := &recordConn{}
		if err := apply(c); err != nil || c.calls != 1 {
			t.Fatalf("%s %q: %d calls, %v", name, params, c.calls, err)
		}
	})
}
