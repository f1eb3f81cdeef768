package rest

import (
	"context"
	"net/http"
	"strconv"
	"strings"

	"github.com/matinee-dev/matinee/room"
)

// IngestRequest is the body of POST /api/rooms/{id}/ingests. Type "rtmp"
// makes a stream key for RTMP publishers; without a type, File names a
// file of the media folder the server plays into the room, and without
// File the answer says where to send RTP (what `matinee play` does).
type IngestRequest struct {
	Type  string `json:"type"`
	Name  string `json:"name"`
	Video *bool  `json:"video"`
	Audio *bool  `json:"audio"`
	File  string `json:"file"`
	Loop  bool   `json:"loop"`
}

// IngestResponse answers POST /api/rooms/{id}/ingests for plain RTP or a
// file.
type IngestResponse struct {
	ID        string          `json:"id"`
	Room      string          `json:"room"`
	Endpoints []room.Endpoint `json:"endpoints"`
	File      string          `json:"file,omitempty"`
}

// StreamKeyResponse answers POST /api/rooms/{id}/ingests {"type":"rtmp"}:
// the key is shown this once.
type StreamKeyResponse struct {
	ID        string `json:"id"`
	Room      string `json:"room"`
	Type      string `json:"type"`
	URL       string `json:"url"`
	RTMPSURL  string `json:"rtmpsUrl,omitempty"` // when RTMPS is on
	StreamKey string `json:"streamKey"`
}

// Ingests runs what streams into a room over plain RTP.
type Ingests interface {
	// Start opens a plain-RTP ingest into the room (and plays req.File
	// into it when set). Its errors go through the API's one mapping: a
	// room or rest Error, recorder.ErrNoFFmpeg...
	Start(ctx context.Context, roomID string, req IngestRequest) (IngestResponse, error)
	// Stop ends an ingest of the room; false when there is no such one.
	Stop(roomID, id string) bool
}

// RTMP is the RTMP server, for stream keys.
type RTMP interface {
	// RTMPURL is the server URL a publisher is given, for a browser that
	// reached this server at host.
	RTMPURL(host string) string
	// RTMPSURL is the same over TLS; empty when RTMPS is off.
	RTMPSURL(host string) string
	// RevokeLive cuts off a publisher live on the key.
	RevokeLive(keyID string)
	// Listening reports whether the RTMP server is on.
	Listening() bool
}

// streamKeyPrefix starts the id of a stream key (room.NewStreamKey), so
// DELETE …/ingests/{iid} tells a key from a running ingest.
const streamKeyPrefix = "sk_"

func (a *API) startIngest(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var req IngestRequest
	if !a.decode(w, r, &req) {
		return
	}
	switch {
	case req.Type == "rtmp":
		a.newStreamKey(w, r, id)
		return
	case req.Type != "":
		WriteError(w, FieldError("type", `"type" must be "rtmp", or none for plain RTP or a file; not `+strconv.Quote(req.Type)))
		return
	case !IsAdmin(r):
		WriteError(w, Forbidden(`a host may make RTMP ingests ({"type":"rtmp"}); plain RTP and files need the API key`))
		return
	}
	res, err := a.cfg.Ingests.Start(r.Context(), id, req)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusCreated, res)
}

func (a *API) newStreamKey(w http.ResponseWriter, r *http.Request, id string) {
	keyID, key, err := a.cfg.Rooms.NewStreamKey(id)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if !a.cfg.RTMP.Listening() {
		a.cfg.Logger.Warn("stream key made while the RTMP server is off (--rtmp-addr)", "room", id)
	}
	WriteJSON(w, http.StatusCreated, StreamKeyResponse{ID: keyID, Room: id, Type: "rtmp", URL: a.cfg.RTMP.RTMPURL(r.Host), RTMPSURL: a.cfg.RTMP.RTMPSURL(r.Host), StreamKey: key})
}

func (a *API) stopIngest(w http.ResponseWriter, r *http.Request) {
	id, iid := r.PathValue("id"), r.PathValue("iid")
	if strings.HasPrefix(iid, streamKeyPrefix) {
		a.revokeStreamKey(w, r, id, iid)
		return
	}
	if !IsAdmin(r) {
		WriteError(w, Forbidden("a host may revoke RTMP stream keys; other ingests need the API key"))
		return
	}
	if !a.cfg.Ingests.Stop(id, iid) {
		WriteError(w, NotFound("no ingest "+iid+" in room "+id))
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{})
}

// revokeStreamKey removes a key; its live publisher, if any, is cut off.
func (a *API) revokeStreamKey(w http.ResponseWriter, r *http.Request, id, keyID string) {
	found, err := a.cfg.Rooms.RevokeStreamKey(id, keyID)
	if !found {
		WriteError(w, NotFound("no stream key "+keyID+" in room "+id))
		return
	}
	// A store failure has removed the key all the same.
	a.cfg.RTMP.RevokeLive(keyID)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{})
}
