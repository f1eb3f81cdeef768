package server_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/matinee-dev/matinee/config"
	"github.com/matinee-dev/matinee/internal/redistest"
)

// BenchmarkClusterMembersFanout: a chat line from a member on node a
// reaches 100 members of a's room who joined through node b (each its own
// session between the nodes, on one real Redis). One op is one line,
// sent until the last of the 100 has it; compare with -members-local
// (the same 100 on a). Outside CI:
// go test -run x -bench BenchmarkClusterMembersFanout -benchtime 50x ./server/
func BenchmarkClusterMembersFanout(b *testing.B) {
	for _, remote := range []bool{false, true} {
		name := "local"
		if remote {
			name = "through-b"
		}
		b.Run(name, func(b *testing.B) { benchFanout(b, remote, 100) })
	}
}

func benchFanout(b *testing.B, remote bool, members int) {
	r := redistest.Start(b)
	edit := func(c *config.Config) {
		c.RelayMembers = true
		c.ChatRate, c.ChatAddrRate = 0, 0
		c.WSMaxPerAddr = 0
		c.MaxPeers = members + 10
	}
	na := startNodeWith(b, r, "a", edit)
	nb := startNodeWith(b, r, "b", edit)
	dial := func(base string) *websocket.Conn {
		ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(base, "http")+"/ws", nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = ws.Close() })
		return ws
	}
	call := func(ws *websocket.Conn, method string, params any) {
		if err := ws.WriteJSON(map[string]any{"jsonrpc": "2.0", "id": 1, "method": method, "params": params}); err != nil {
			b.Fatal(err)
		}
		for {
			var f struct {
				ID    *int            `json:"id"`
				Error json.RawMessage `json:"error"`
			}
			if err := ws.ReadJSON(&f); err != nil {
				b.Fatal(err)
			}
			if f.ID != nil {
				if f.Error != nil {
					b.Fatalf("%s: %s", method, f.Error)
				}
				return
			}
		}
	}
	// Cleanups run last first: the readers end once their sockets closed.
	var wg sync.WaitGroup
	b.Cleanup(wg.Wait)
	ana := dial(na.base)
	call(ana, "join", map[string]any{"room": "fanout", "name": "Ana"})
	// Each member's reader counts the chat lines it got.
	var mu sync.Mutex
	cond := sync.NewCond(&mu)
	got := make([]int, members)
	base := na.base
	if remote {
		base = nb.base
	}
	for i := range members {
		ws := dial(base)
		call(ws, "join", map[string]any{"room": "fanout", "name": fmt.Sprintf("m%d", i)})
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				var f struct {
					Method string `json:"method"`
				}
				if err := ws.ReadJSON(&f); err != nil {
					return
				}
				if f.Method == "chat" {
					mu.Lock()
					got[i]++
					cond.Broadcast()
					mu.Unlock()
				}
			}
		}()
	}
	// Ana's own reader drains her notifications.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			if _, _, err := ana.ReadMessage(); err != nil {
				return
			}
		}
	}()
	b.ResetTimer()
	for n := 1; n <= b.N; n++ {
		if err := ana.WriteJSON(map[string]any{"jsonrpc": "2.0", "id": n + 1, "method": "chat", "params": map[string]any{"text": "line"}}); err != nil {
			b.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		mu.Lock()
		for !allAt(got, n) {
			if time.Now().After(deadline) {
				mu.Unlock()
				b.Fatalf("line %d not at every member within 10s: %v", n, got)
			}
			waitCond(cond, 100*time.Millisecond)
		}
		mu.Unlock()
	}
	b.StopTimer()
}

func allAt(got []int, n int) bool {
	for _, g := range got {
		if g < n {
			return false
		}
	}
	return true
}

// waitCond waits on c (its lock held) at most d.
func waitCond(c *sync.Cond, d time.Duration) {
	t := time.AfterFunc(d, func() {
		c.L.Lock()
		c.Broadcast()
		c.L.Unlock()
	})
	c.Wait()
	t.Stop()
}
