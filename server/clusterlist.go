package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"sync"

	"github.com/matinee-dev/matinee/cluster"
	"github.com/matinee-dev/matinee/rest"
	"github.com/matinee-dev/matinee/room"
)

// The room list of a cluster (GET /api/rooms on any node): each serving
// node's own list, with its live peer counts, gathered by the node asked,
// plus the rooms made through the API that no node holds right now
// (their node ended or died; the next join brings them back), from their
// records in Redis.

// listedRoom is one room of a node's list, kept as that node wrote it.
type listedRoom struct {
	id     string
	raw    json.RawMessage
	record bool // from Redis, not from a node
}

func (g *clusterGlue) listRooms(w http.ResponseWriter, r *http.Request, next http.Handler) {
	ctx, cancel := context.WithTimeout(r.Context(), clusterTimeout)
	defer cancel()
	nodes, err := g.node.Nodes(ctx)
	if err != nil {
		rest.WriteError(w, &rest.Error{Status: http.StatusServiceUnavailable, Code: "cluster_unavailable", Message: "the room list needs the cluster: " + err.Error()})
		return
	}
	var (
		mu     sync.Mutex
		all    []listedRoom
		failed []string
		wg     sync.WaitGroup
	)
	add := func(rs []listedRoom, err error, node string) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			g.log.Warn("cluster room list: a node did not answer", "node", node, "err", err)
			failed = append(failed, node)
			return
		}
		all = append(all, rs...)
	}
	for _, n := range nodes {
		if n.ID == g.node.ID() {
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r.Clone(ctx))
			rs, err := parseRoomList(rec.Code, rec.Body)
			add(rs, err, n.ID)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rs, err := g.remoteRooms(ctx, r, n)
			add(rs, err, n.ID)
		}()
	}
	wg.Wait()
	// Rooms no node holds: from their records.
	if specs, err := g.node.Specs(ctx); err == nil {
		for id, rec := range specs {
			info, err := room.RecordInfo(rec)
			if err != nil {
				continue
			}
			b, err := json.Marshal(struct {
				room.RoomView
				URL string `json:"url"`
			}{room.RoomView{RoomInfo: info}, g.s.baseURL(r) + "/r/" + url.PathEscape(id)})
			if err == nil {
				// After the nodes' own: a held room is listed live.
				all = append(all, listedRoom{id: id, raw: b, record: true})
			}
		}
	}
	// One entry per room, a node's live one before a record.
	sort.SliceStable(all, func(i, j int) bool {
		if all[i].id != all[j].id {
			return all[i].id < all[j].id
		}
		return !all[i].record && all[j].record
	})
	out := make([]json.RawMessage, 0, len(all))
	for i, lr := range all {
		if i == 0 || all[i-1].id != lr.id {
			out = append(out, lr.raw)
		}
	}
	if len(failed) > 0 {
		sort.Strings(failed)
		// Their rooms made through the API are listed from their
		// records; rooms opened by a link there are missing.
		w.Header().Set("X-Matinee-Partial", strings.Join(failed, ","))
	}
	rest.WriteJSON(w, http.StatusOK, map[string]any{"rooms": out})
}

// remoteRooms asks node n for its own rooms (the placed header keeps it
// from gathering in turn).
func (g *clusterGlue) remoteRooms(ctx context.Context, r *http.Request, n cluster.NodeInfo) ([]listedRoom, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(n.URL, "/")+"/api/rooms", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", r.Header.Get("Authorization"))
	req.Header.Set(placedHeader, g.node.ID())
	resp, err := (&http.Client{Transport: g.transport()}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return parseRoomList(resp.StatusCode, io.LimitReader(resp.Body, maxRoomListBytes))
}

// maxRoomListBytes bounds one node's answer (about 1 KiB per room).
const maxRoomListBytes = 64 << 20

func parseRoomList(status int, body io.Reader) ([]listedRoom, error) {
	if status != http.StatusOK {
		return nil, fmt.Errorf("room list: HTTP %d", status)
	}
	var l struct {
		Rooms []json.RawMessage `json:"rooms"`
	}
	if err := json.NewDecoder(body).Decode(&l); err != nil {
		return nil, fmt.Errorf("room list: %w", err)
	}
	out := make([]listedRoom, 0, len(l.Rooms))
	for _, raw := range l.Rooms {
		var id struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(raw, &id) != nil || id.ID == "" {
			return nil, fmt.Errorf("room list: a room without an id")
		}
		out = append(out, listedRoom{id: id.ID, raw: raw})
	}
	return out, nil
}
