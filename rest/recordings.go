package rest

import (
	"net/http"
	"net/url"

	"github.com/matinee-dev/matinee/recorder"
)

// recordingRequest is the body of POST /api/rooms/{id}/recordings.
type recordingRequest struct {
	Formats   []string `json:"formats"`
	RTMP      []string `json:"rtmp"`
	Producers []string `json:"producers"`
	NoAudio   bool     `json:"noAudio"`
}

func (a *API) startRecording(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var req recordingRequest
	if !a.decode(w, r, &req) {
		return
	}
	rm, ok := a.cfg.Rooms.Room(id)
	if !ok {
		WriteError(w, NotFound("room "+id+" is not live (nobody is in it)"))
		return
	}
	rec, err := a.cfg.Recorder.Start(id, rm.Media(), recorder.Options{Formats: req.Formats, RTMP: req.RTMP, Producers: req.Producers, NoAudio: req.NoAudio})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	info := rec.Info()
	w.Header().Set("Location", "/api/rooms/"+url.PathEscape(id)+"/recordings/"+info.ID)
	WriteJSON(w, http.StatusCreated, info)
}

func (a *API) listRecordings(w http.ResponseWriter, r *http.Request) {
	list, err := a.cfg.Recorder.List(r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{"recordings": list})
}

func (a *API) getRecording(w http.ResponseWriter, r *http.Request) {
	info, err := a.cfg.Recorder.Get(r.PathValue("id"), r.PathValue("rid"))
	if err != nil {
		a.recordingFail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, info)
}

func (a *API) stopRecording(w http.ResponseWriter, r *http.Request) {
	info, err := a.cfg.Recorder.Stop(r.PathValue("id"), r.PathValue("rid"))
	if err != nil {
		a.recordingFail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, info)
}

// recordingFail answers a recording that cannot be read, unknown or
// not (an id that names no folder, a recording.json that does not
// parse), with a 404 naming it.
func (a *API) recordingFail(w http.ResponseWriter, r *http.Request, err error) {
	a.cfg.Logger.Debug("api: recording", "room", r.PathValue("id"), "id", r.PathValue("rid"), "err", err)
	WriteError(w, NotFound("no recording "+r.PathValue("rid")+" in room "+r.PathValue("id")))
}
