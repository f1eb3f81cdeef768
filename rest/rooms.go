package rest

import (
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/matinee-dev/matinee/room"
)

// apiRoom is a room as the API lists it; apiRoomDetail with its live
// state.
type apiRoom struct {
	room.RoomView
	URL string `json:"url"`
}

type apiRoomDetail struct {
	room.RoomDetail
	URL string `json:"url"`
}

func (a *API) joinURL(r *http.Request, id string) string {
	return a.cfg.BaseURL(r) + "/r/" + url.PathEscape(id)
}

// roomOr404 is the room of the path, or a 404 already answered.
func (a *API) roomOr404(w http.ResponseWriter, r *http.Request) (*room.Room, bool) {
	id := r.PathValue("id")
	rm, ok := a.cfg.Rooms.Room(id)
	if !ok {
		WriteError(w, NotFound("unknown room "+strconv.Quote(id)))
	}
	return rm, ok
}

// ttlField reads an optional "ttl" in seconds, 1 to room.MaxTokenTTL.
func ttlField(ttl *int64, dflt time.Duration) (time.Duration, *Error) {
	if ttl == nil {
		return dflt, nil
	}
	max := int64(room.MaxTokenTTL / time.Second)
	if *ttl < 1 || *ttl > max {
		return 0, FieldError("ttl", `"ttl" must be 1-`+strconv.FormatInt(max, 10)+" seconds")
	}
	return time.Duration(*ttl) * time.Second, nil
}

func (a *API) createRoom(w http.ResponseWriter, r *http.Request) {
	var spec room.RoomSpec
	if !a.decode(w, r, &spec) {
		return
	}
	info, err := a.cfg.Rooms.CreateRoom(spec)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/rooms/"+url.PathEscape(info.ID))
	WriteJSON(w, http.StatusCreated, apiRoom{RoomView: room.RoomView{RoomInfo: info}, URL: a.joinURL(r, info.ID)})
}

func (a *API) listRooms(w http.ResponseWriter, r *http.Request) {
	out := []apiRoom{}
	for _, rm := range a.cfg.Rooms.Rooms() {
		out = append(out, apiRoom{RoomView: rm.Summary(), URL: a.joinURL(r, rm.ID())})
	}
	WriteJSON(w, http.StatusOK, map[string]any{"rooms": out})
}

func (a *API) getRoom(w http.ResponseWriter, r *http.Request) {
	rm, ok := a.roomOr404(w, r)
	if !ok {
		return
	}
	WriteJSON(w, http.StatusOK, apiRoomDetail{RoomDetail: rm.Detail(), URL: a.joinURL(r, rm.ID())})
}

func (a *API) updateRoom(w http.ResponseWriter, r *http.Request) {
	rm, ok := a.roomOr404(w, r)
	if !ok {
		return
	}
	var u room.RoomUpdate
	if !a.decode(w, r, &u) {
		return
	}
	if _, err := a.cfg.Rooms.UpdateRoom(rm.ID(), u); err != nil {
		a.fail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, apiRoomDetail{RoomDetail: rm.Detail(), URL: a.joinURL(r, rm.ID())})
}

func (a *API) deleteRoom(w http.ResponseWriter, r *http.Request) {
	if err := a.cfg.Rooms.DeleteRoom(r.PathValue("id")); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// tokenRequest is the body of POST /api/rooms/{id}/tokens.
type tokenRequest struct {
	Identity string `json:"identity"`
	Name     string `json:"name"`
	Role     string `json:"role"`
	TTL      *int64 `json:"ttl"`
}

func (a *API) mintToken(w http.ResponseWriter, r *http.Request) {
	rm, ok := a.roomOr404(w, r)
	if !ok {
		return
	}
	var p tokenRequest
	if !a.decode(w, r, &p) {
		return
	}
	spec := room.TokenSpec{Identity: p.Identity, Name: p.Name, Role: p.Role}
	if p.TTL != nil {
		ttl, e := ttlField(p.TTL, 0)
		if e != nil {
			WriteError(w, e)
			return
		}
		spec.TTL = ttl
	}
	tok, claims, err := a.cfg.Rooms.MintToken(rm.ID(), spec)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusCreated, struct {
		Token     string    `json:"token"`
		URL       string    `json:"url"`
		Room      string    `json:"room"`
		Identity  string    `json:"identity"`
		Role      string    `json:"role"`
		ExpiresAt time.Time `json:"expiresAt"`
	}{tok, a.joinURL(r, rm.ID()) + "#token=" + tok, rm.ID(), claims.Identity, claims.Role, claims.ExpiresAt.UTC()})
}

// hlsURL mints a signed URL to a room's live HLS, for a player that
// cannot send headers: a TV, VLC, a CDN. With a join token as the bearer,
// the URL expires no later than the token.
func (a *API) hlsURL(w http.ResponseWriter, r *http.Request) {
	rm, ok := a.roomOr404(w, r)
	if !ok {
		return
	}
	var p struct {
		TTL *int64 `json:"ttl"`
	}
	if !a.decode(w, r, &p) {
		return
	}
	ttl, e := ttlField(p.TTL, room.DefaultTokenTTL)
	if e != nil {
		WriteError(w, e)
		return
	}
	exp := time.Now().Add(ttl)
	if c := TokenClaims(r); c != nil && c.ExpiresAt != nil && c.ExpiresAt.Before(exp) {
		exp = c.ExpiresAt.Time
	}
	sec := exp.Unix()
	path := "/hls/" + url.PathEscape(rm.ID()) + "/index.m3u8?exp=" + strconv.FormatInt(sec, 10) + "&sig=" + a.cfg.SignHLS(rm.ID(), sec)
	WriteJSON(w, http.StatusOK, struct {
		URL       string    `json:"url"`
		Path      string    `json:"path"`
		ExpiresAt time.Time `json:"expiresAt"`
	}{a.cfg.BaseURL(r) + path, path, time.Unix(sec, 0).UTC()})
}

func (a *API) kick(w http.ResponseWriter, r *http.Request) {
	var p struct {
		Reason string `json:"reason"`
	}
	if !a.decode(w, r, &p) {
		return
	}
	if len(p.Reason) > 200 {
		WriteError(w, FieldError("reason", `"reason" must be at most 200 bytes`))
		return
	}
	if err := a.cfg.Rooms.Kick(r.PathValue("id"), r.PathValue("identity"), p.Reason); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) mute(w http.ResponseWriter, r *http.Request) {
	var p struct {
		Kind string `json:"kind"`
	}
	if !a.decode(w, r, &p) {
		return
	}
	ids, err := a.cfg.Rooms.Mute(r.PathValue("id"), r.PathValue("identity"), p.Kind)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{"producerIds": ids})
}

func (a *API) media(w http.ResponseWriter, r *http.Request) {
	lib := a.cfg.Rooms.Media()
	if lib == nil {
		WriteJSON(w, http.StatusOK, map[string]any{"enabled": false, "items": []room.MediaItem{}})
		return
	}
	items, err := lib.List()
	if err != nil {
		a.fail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{"enabled": true, "items": items})
}
