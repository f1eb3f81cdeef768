package relay

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"testing"

	"github.com/matinee-dev/matinee/room"
	"github.com/pion/webrtc/v4"
)

// A VP8 simulcast producer and an Opus one, as the media core describes
// them.
func samplePiped() []room.PipedProducer {
	return []room.PipedProducer{{
		ID: "pr_1", Owner: "m_1", Kind: "video", Stream: "screen", Priority: 2,
		Codec: webrtc.RTPCodecCapability{MimeType: "video/VP8", ClockRate: 90000,
			RTCPFeedback: []webrtc.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}}},
		AppData: map[string]any{"source": "screen"},
		Layers:  []room.PipedLayer{{RID: "q", SSRC: 11}, {RID: "h", SSRC: 12}, {RID: "f", SSRC: 13}},
	}, {
		ID: "pr_2", Owner: "m_1", Kind: "audio",
		Codec:  webrtc.RTPCodecCapability{MimeType: "audio/opus", ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"},
		Layers: []room.PipedLayer{{SSRC: 21}},
	}}
}

func sampleMessages(t testing.TB) []Message {
	var ps []Producer
	for _, d := range samplePiped() {
		p, err := describe(d)
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	key := func(b byte) *Key {
		return &Key{Key: bytes.Repeat([]byte{b}, keyLen), Salt: bytes.Repeat([]byte{b + 1}, saltLen)}
	}
	base := Message{From: "node-a:8443", Pipe: "0123abcd", Room: "party"}
	with := func(f func(*Message)) Message { m := base; f(&m); return m }
	return []Message{
		with(func(m *Message) {
			m.Type, m.Addr, m.ToOrigin, m.ToEdge = typeOpen, "10.0.0.2:40000", key(1), key(3)
		}),
		with(func(m *Message) { m.Type, m.Producers = typeReady, ps }),
		with(func(m *Message) { m.Type, m.Producers = typeProducer, ps[:1] }),
		with(func(m *Message) { m.Type, m.Producer = typeEnded, "pr_1" }),
		with(func(m *Message) { m.Type, m.Producers = typeSync, ps }),
		with(func(m *Message) { m.Type = typeSync }), // no producers left
		with(func(m *Message) { m.Type = typeKeep }),
		with(func(m *Message) { m.Type, m.Reason = typeClose, "no viewers" }),
		with(func(m *Message) { m.Type, m.Reason = typeClosed, "the room ended here" }),
		with(func(m *Message) {
			m.Type, m.Reason, m.Via = typeClosed, "node-a:8443 sends its 1 pipes", []string{"node-b:8443", "node-c"}
		}),
	}
}

// TestMessageRoundTrip: every message type encodes and decodes to itself,
// and a producer description comes back as the media core gave it.
func TestMessageRoundTrip(t *testing.T) {
	for _, m := range sampleMessages(t) {
		b, err := Encode(m)
		if err != nil {
			t.Fatalf("encode %s: %v", m.Type, err)
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("decode %s: %v\n%s", m.Type, err, b)
		}
		m.V = version
		if !reflect.DeepEqual(got, m) {
			t.Errorf("%s: decoded\n%+v\nwant\n%+v", m.Type, got, m)
		}
	}
	for _, d := range samplePiped() {
		p, err := describe(d)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(p)
		var back Producer
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if got := back.piped(); !reflect.DeepEqual(got, d) {
			t.Errorf("producer %s came back as\n%+v\nwant\n%+v", d.ID, got, d)
		}
	}
}

// TestMessageRefused: what Decode refuses, each with a reason.
func TestMessageRefused(t *testing.T) {
	good := sampleMessages(t)
	edit := func(i int, f func(*Message)) []byte {
		m := good[i]
		m.V = version
		if m.Producers != nil {
			m.Producers = append([]Producer(nil), m.Producers...)
		}
		f(&m)
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cases := map[string][]byte{
		"not JSON":          []byte("{"),
		"too long":          bytes.Repeat([]byte(" "), maxMessage+1),
		"old version":       edit(6, func(m *Message) { m.V = 0 }),
		"unknown type":      edit(6, func(m *Message) { m.Type = "explode" }),
		"bad sender":        edit(6, func(m *Message) { m.From = "a b" }),
		"bad pipe":          edit(6, func(m *Message) { m.Pipe = "" }),
		"bad room":          edit(6, func(m *Message) { m.Room = "../x" }),
		"long reason":       edit(8, func(m *Message) { m.Reason = strings.Repeat("x", maxText+1) }),
		"open no address":   edit(0, func(m *Message) { m.Addr = "" }),
		"open any address":  edit(0, func(m *Message) { m.Addr = "0.0.0.0:4000" }),
		"open port 0":       edit(0, func(m *Message) { m.Addr = "10.0.0.2:0" }),
		"open short key":    edit(0, func(m *Message) { m.ToEdge = &Key{Key: []byte{1}, Salt: make([]byte, saltLen)} }),
		"open no key":       edit(0, func(m *Message) { m.ToOrigin = nil }),
		"ended no producer": edit(3, func(m *Message) { m.Producer = "" }),
		"producer two":      edit(2, func(m *Message) { m.Producers = append(m.Producers, m.Producers[0]) }),
		"bad kind":          edit(2, func(m *Message) { m.Producers[0].Kind = "data" }),
		"no layers":         edit(2, func(m *Message) { m.Producers[0].Layers = nil }),
		"four layers": edit(2, func(m *Message) {
			m.Producers[0].Layers = []Layer{{SSRC: 1}, {SSRC: 2}, {SSRC: 3}, {SSRC: 4}}
		}),
		"SSRC 0":     edit(2, func(m *Message) { m.Producers[0].Layers = []Layer{{SSRC: 0}} }),
		"SSRC twice": edit(2, func(m *Message) { m.Producers[0].Layers = []Layer{{SSRC: 5}, {SSRC: 5}} }),
		"big appData": edit(2, func(m *Message) {
			m.Producers[0].AppData = json.RawMessage(`"` + strings.Repeat("x", maxAppData) + `"`)
		}),
		"via many":       edit(9, func(m *Message) { m.Via = make([]string, maxVia+1) }),
		"via bad node":   edit(9, func(m *Message) { m.Via = []string{"b", "a b"} }),
		"bad producer":   edit(2, func(m *Message) { m.Producers[0].ID = "a b" }),
		"many producers": edit(4, func(m *Message) { m.Producers = make([]Producer, maxProducers+1) }),
	}
	for name, b := range cases {
		if _, err := Decode(b); !errors.Is(err, ErrBadMessage) {
			t.Errorf("%s: decoded (err %v)", name, err)
		}
	}
}

// TestKeyNeverPrinted: keys stay out of logs and formatted errors.
func TestKeyNeverPrinted(t *testing.T) {
	m := sampleMessages(t)[0]
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("msg", "key", *m.ToEdge, "ptr", m.ToOrigin)
	out := buf.String() + fmt.Sprintf("%v %s %+v", *m.ToEdge, m.ToOrigin, m.ToEdge)
	for _, k := range []*Key{m.ToEdge, m.ToOrigin} {
		if strings.Contains(out, fmt.Sprint(k.Key)) || strings.Contains(out, string(k.Key)) {
			t.Fatalf("a key was printed: %s", out)
		}
	}
}

// FuzzDecode: whatever arrives on a node's channel, Decode neither
// panics nor accepts what it cannot encode again, and what it accepts
// makes producer descriptions the media core can be handed.
func FuzzDecode(f *testing.F) {
	for _, m := range sampleMessages(f) {
		b, err := Encode(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"v":1,"type":"sync","from":"a","pipe":"p","room":"r","producers":[{"id":"x","kind":"video","layers":[{"ssrc":1}],"appData":{"a":[1,2,{"b":null}]}}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			return
		}
		again, err := Encode(m)
		if err != nil {
			t.Fatalf("accepted but not encodable: %v", err)
		}
		if _, err := Decode(again); err != nil {
			t.Fatalf("re-encoded message refused: %v", err)
		}
		for _, p := range m.Producers {
			d := p.piped()
			if len(d.Layers) == 0 || len(d.Layers) > 3 || (d.Kind != "audio" && d.Kind != "video") {
				t.Fatalf("accepted producer %+v", d)
			}
		}
	})
}
