package udpbatch

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"
)

// TestRawSocketReadsAsTheSocket: the raw reads give what the socket's own
// reads give (payload, sender as the net package spells it), honour read
// deadlines and end with net.ErrClosed when the socket closes.
func TestRawSocketReadsAsTheSocket(t *testing.T) {
	for _, tc := range []struct {
		name, network string
		listenIP      net.IP
		fromIP        net.IP
	}{
		{"ipv4", "udp4", net.IPv4(127, 0, 0, 1), net.IPv4(127, 0, 0, 1)},
		{"ipv6", "udp6", net.IPv6loopback, net.IPv6loopback},
		{"dual-stack-v4-sender", "udp", net.IPv6unspecified, net.IPv4(127, 0, 0, 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rx := listenOn(t, tc.network, tc.listenIP)
			r := NewRawSocket(rx)
			if (r.rc != nil) != rawSupported {
				t.Fatalf("raw reads %v, supported here %v", r.rc != nil, rawSupported)
			}
			port := rx.LocalAddr().(*net.UDPAddr).Port
			fromNet := "udp4"
			if tc.fromIP.To4() == nil {
				fromNet = "udp6"
			}
			tx := listenOn(t, fromNet, tc.fromIP)
			// The same datagram through both readers: what net reports
			// is what the Reader must report.
			dst := &net.UDPAddr{IP: tc.fromIP, Port: port}
			msg := []byte("a datagram of some length, with \x00 bytes \x80\xff")
			if _, err := tx.WriteTo(msg, dst); err != nil {
				t.Fatal(err)
			}
			_ = rx.SetReadDeadline(time.Now().Add(2 * time.Second))
			buf := make([]byte, 1500)
			n0, want, err := rx.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.WriteTo(msg, dst); err != nil {
				t.Fatal(err)
			}
			n, got, err := r.ReadFrom(buf)
			if err != nil {
				t.Fatal(err)
			}
			if n != n0 || !bytes.Equal(buf[:n], msg) || got != want {
				t.Fatalf("read %d bytes %q from %v, the socket reads %d from %v", n, buf[:n], got, n0, want)
			}
			// A datagram longer than the buffer is cut to it, as with net.
			if _, err := tx.WriteTo(msg, dst); err != nil {
				t.Fatal(err)
			}
			if n, _, err := r.ReadFrom(buf[:5]); err != nil || n != 5 || string(buf[:5]) != string(msg[:5]) {
				t.Fatalf("short buffer: %d %q %v", n, buf[:n], err)
			}
			// Deadline.
			_ = rx.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			if _, _, err := r.ReadFrom(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("past the deadline: %v, want a timeout", err)
			} else if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
				t.Fatalf("timeout %v is not a net.Error that says so", err)
			}
			// A read waiting when the socket closes ends.
			_ = rx.SetReadDeadline(time.Time{})
			done := make(chan error, 1)
			go func() { _, _, err := r.ReadFrom(buf); done <- err }()
			time.Sleep(20 * time.Millisecond)
			_ = rx.Close()
			select {
			case err := <-done:
				if !errors.Is(err, net.ErrClosed) {
					t.Fatalf("read on a closed socket: %v, want net.ErrClosed", err)
				}
			case <-time.After(2 * time.Second):
				t.Fatal("a read waiting when the socket closed did not end")
			}
		})
	}
}

// TestRawSocketConcurrentReaders: two goroutines reading one socket get every
// datagram once between them (run with -race).
func TestRawSocketConcurrentReaders(t *testing.T) {
	rx := listen(t)
	_ = rx.SetReadBuffer(1 << 20)
	r := NewRawSocket(rx)
	tx := listen(t)
	const total = 400
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 64)
			for {
				n, a, err := r.ReadFrom(buf)
				if err != nil {
					return
				}
				if a.Port() != uint16(tx.LocalAddr().(*net.UDPAddr).Port) {
					t.Errorf("sender %v", a)
				}
				mu.Lock()
				seen[string(buf[:n])]++
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < total; i++ {
		if _, err := tx.WriteTo([]byte{byte(i >> 8), byte(i)}, rx.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		if i%50 == 49 {
			time.Sleep(time.Millisecond) // stay inside the receive buffer
		}
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		if n == total || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	_ = rx.Close()
	wg.Wait()
	if len(seen) != total {
		t.Fatalf("%d distinct datagrams read, want %d", len(seen), total)
	}
	for k, c := range seen {
		if c != 1 {
			t.Fatalf("datagram %x read %d times", k, c)
		}
	}
}

// BenchmarkRawSocketReadFrom: a raw read allocates nothing.
func BenchmarkRawSocketReadFrom(b *testing.B) {
	rx := listen(b)
	_ = rx.SetReadBuffer(1 << 20)
	r := NewRawSocket(rx)
	tx := listen(b)
	msg := make([]byte, 200)
	buf := make([]byte, 1500)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := tx.WriteTo(msg, rx.LocalAddr()); err != nil {
			b.Fatal(err)
		}
		if _, _, err := r.ReadFrom(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// TestRawSocketWritesAsTheSocket: raw sends arrive from the socket's own
// address, dual-stack sockets reach IPv4 peers, and what the socket cannot
// send gets the socket's own error.
func TestRawSocketWritesAsTheSocket(t *testing.T) {
	for _, tc := range []struct {
		name, network string
		listenIP      net.IP
		toIP          net.IP
	}{
		{"ipv4", "udp4", net.IPv4(127, 0, 0, 1), net.IPv4(127, 0, 0, 1)},
		{"ipv6", "udp6", net.IPv6loopback, net.IPv6loopback},
		{"dual-stack-to-v4", "udp", net.IPv6unspecified, net.IPv4(127, 0, 0, 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := listenOn(t, tc.network, tc.listenIP)
			s := NewRawSocket(c)
			toNet := "udp4"
			if tc.toIP.To4() == nil {
				toNet = "udp6"
			}
			rx := listenOn(t, toNet, tc.toIP)
			dst := rx.LocalAddr().(*net.UDPAddr).AddrPort()
			msg := []byte("raw datagram \x00\xff")
			for i := 0; i < 3; i++ {
				if n, err := s.WriteTo(msg, dst); err != nil || n != len(msg) {
					t.Fatalf("write: %d %v", n, err)
				}
			}
			_ = rx.SetReadDeadline(time.Now().Add(2 * time.Second))
			buf := make([]byte, 100)
			for i := 0; i < 3; i++ {
				n, from, err := rx.ReadFromUDPAddrPort(buf)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(buf[:n], msg) || from.Port() != uint16(c.LocalAddr().(*net.UDPAddr).Port) {
					t.Fatalf("got %q from %v", buf[:n], from)
				}
			}
		})
	}
	t.Run("v4-socket-to-v6", func(t *testing.T) {
		c := listen(t)
		s := NewRawSocket(c)
		dst := netip.AddrPortFrom(netip.IPv6Loopback(), 9)
		_, err := s.WriteTo([]byte("x"), dst)
		_, want := c.WriteToUDPAddrPort([]byte("x"), dst)
		if err == nil || want == nil || err.Error() != want.Error() {
			t.Fatalf("error %v, the socket's %v", err, want)
		}
	})
	t.Run("closed", func(t *testing.T) {
		c := listen(t)
		s := NewRawSocket(c)
		_ = c.Close()
		if _, err := s.WriteTo([]byte("x"), netip.MustParseAddrPort("127.0.0.1:9")); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("write on a closed socket: %v", err)
		}
	})
}

// BenchmarkRawSocketWriteTo: a raw write allocates nothing.
func BenchmarkRawSocketWriteTo(b *testing.B) {
	c := listen(b)
	s := NewRawSocket(c)
	rx := listen(b)
	_ = rx.SetReadBuffer(4 << 20)
	dst := rx.LocalAddr().(*net.UDPAddr).AddrPort()
	msg := make([]byte, 200)
	buf := make([]byte, 1500)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.WriteTo(msg, dst); err != nil {
			b.Fatal(err)
		}
		if _, _, err := rx.ReadFromUDPAddrPort(buf); err != nil {
			b.Fatal(err)
		}
	}
}
