package amf0

import (
	"reflect"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	in := []any{"connect", 1.0, Object{{"app", "live"}, {"tcUrl", "rtmp://h/live"}, {"fpad", false}}, nil,
		ECMAArray{{"duration", 0.0}, {"width", 1280.0}}}
	b, err := Append(nil, in...)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	want := []any{"connect", 1.0, Object{{"app", "live"}, {"tcUrl", "rtmp://h/live"}, {"fpad", false}}, nil,
		Object{{"duration", 0.0}, {"width", 1280.0}}}
	if !reflect.DeepEqual(out, want) {
		t.Fatalf("got %#v\nwant %#v", out, want)
	}
	if out[2].(Object).Get("app") != "live" {
		t.Error("Get")
	}
	for i := 1; i < len(b); i++ {
		if _, err := Decode(b[:i]); err == nil && i < len(b) {
			// A prefix may end on a value boundary; it must never panic.
			continue
		}
	}
	if _, err := Append(nil, struct{}{}); err == nil {
		t.Error("unsupported type encoded")
	}
}
