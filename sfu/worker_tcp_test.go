package sfu

import (
	"context"
	"net"
	"strconv"
	"testing"

	"github.com/matinee-dev/matinee/internal/testenv"
)

// ICE-TCP: the worker listens on the port it is given and lets it go on
// Close; a listener handed over is the worker's to close.
func TestWorkerICETCP(t *testing.T) {
	port := testenv.FreePort(t)

	w, err := NewWorker(context.Background(), WorkerConfig{LoopbackOnly: true, TCPPort: port})
	if err != nil {
		t.Fatal(err)
	}
	if a, ok := w.TCPAddr().(*net.TCPAddr); !ok || a.Port != port {
		t.Fatalf("TCPAddr %v, want port %d", w.TCPAddr(), port)
	}
	if _, err := NewWorker(context.Background(), WorkerConfig{LoopbackOnly: true, TCPPort: port}); err == nil {
		t.Fatal("a second worker opened the same ICE-TCP port")
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("port still held after Close: %v", err)
	}

	w, err = NewWorker(context.Background(), WorkerConfig{LoopbackOnly: true, TCPListener: ln})
	if err != nil {
		t.Fatal(err)
	}
	if w.TCPAddr().String() != ln.Addr().String() {
		t.Fatalf("TCPAddr %v, want the listener's %v", w.TCPAddr(), ln.Addr())
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := ln.Accept(); err == nil {
		t.Fatal("the listener is open after Close")
	}

	w, err = NewWorker(context.Background(), WorkerConfig{LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if w.TCPAddr() != nil {
		t.Fatalf("ICE-TCP on without a port: %v", w.TCPAddr())
	}
}

// Link-local addresses never become candidates.
func TestKeepIP(t *testing.T) {
	for s, want := range map[string]bool{"192.168.1.5": true, "fd00::5": true, "127.0.0.1": true, "fe80::1": false, "169.254.10.1": false} {
		if got := keepIP(net.ParseIP(s)); got != want {
			t.Errorf("keepIP(%s) = %v", s, got)
		}
	}
}
